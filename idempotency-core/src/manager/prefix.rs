//! The manager's key prefix ([`ManagerBuilder::key_prefix`](super::ManagerBuilder::key_prefix)),
//! all of its handling in one place: a store wrapper is to take over namespacing, and removing
//! the prefix then means deleting this file, its config field and builder method, and the one
//! call in [`CallKey::new`].

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;

/// A namespace prepended to the operation name of every stored key; empty for none.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyPrefix(String);

impl KeyPrefix {
    pub(super) fn new(prefix: String) -> Self {
        KeyPrefix(prefix)
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// # Errors
    /// [`Error::Config`] for a prefix with a control character.
    pub(super) fn validate(&self) -> Result<()> {
        if self.0.chars().any(char::is_control) {
            return Err(Error::Config(
                "the key prefix contains a control character".into(),
            ));
        }
        Ok(())
    }

    /// `key` as the store holds it.
    pub(super) fn apply<'k>(&self, key: &'k IdempotencyKey) -> Cow<'k, IdempotencyKey> {
        if self.0.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(key.with_prefix(&self.0))
        }
    }
}

/// The key of one call in both its forms: as the caller named it (in errors, provenance and
/// events) and as the store holds it (with the manager's prefix). The one key type the engine
/// passes around.
#[derive(Debug, Clone)]
pub(super) struct CallKey<'k> {
    caller: &'k IdempotencyKey,
    stored: Cow<'k, IdempotencyKey>,
}

impl<'k> CallKey<'k> {
    pub(super) fn new(prefix: &KeyPrefix, key: &'k IdempotencyKey) -> Self {
        CallKey {
            caller: key,
            stored: prefix.apply(key),
        }
    }

    /// The key as the caller named it.
    pub(super) fn caller(&self) -> &'k IdempotencyKey {
        self.caller
    }

    /// The key as the store holds it.
    pub(super) fn stored(&self) -> &IdempotencyKey {
        &self.stored
    }

    /// The stored form, owned, when it differs from the caller's.
    pub(super) fn stored_if_other(&self) -> Option<IdempotencyKey> {
        match &self.stored {
            Cow::Borrowed(_) => None,
            Cow::Owned(k) => Some(k.clone()),
        }
    }

    /// The stored form, owned (for an [`OperationLease`](super::OperationLease)).
    pub(super) fn into_stored(self) -> IdempotencyKey {
        self.stored.into_owned()
    }
}
