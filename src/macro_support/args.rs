//! What the parameters of an `#[idempotent]` function may be: key parts (autoref dispatch
//! between `NormalizeKey` and `Serialize`), `manager = ...` sources, caller-supplied keys, and
//! the receiver check.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use idempotency_core::canonical::CanonicalError;
use idempotency_core::{IdempotencyManager, KeyWriter, NormalizeKey};
use serde::Serialize;

/// Wraps a reference to a parameter or field for autoref dispatch: `(&KeyArg(&x))` calls
/// [`ViaNormalize`] when `x`'s type implements `NormalizeKey`, and [`ViaSerialize`] otherwise.
#[allow(missing_debug_implementations)]
pub struct KeyArg<'a, T: ?Sized>(pub &'a T);

/// Preferred: the value's type implements `NormalizeKey`.
pub trait ViaNormalize {
    /// Writes the value into the key.
    ///
    /// # Errors
    /// The value's serialization error.
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>;
}

impl<T: NormalizeKey + ?Sized> ViaNormalize for KeyArg<'_, T> {
    #[inline]
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError> {
        self.0.normalize_key(w)
    }
}

/// What a value needs to enter an idempotency key through `Serialize`. Its own trait so that a
/// value with neither impl gets an error that names the fix.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of an idempotency key",
    label = "this value is neither `Serialize` nor `NormalizeKey`",
    note = "derive `serde::Serialize` or `idempotency::NormalizeKey` for `{Self}`, or leave the parameter out of the key with `#[idempotency(skip)]`"
)]
pub trait KeyPart: Serialize {}

impl<T: Serialize + ?Sized> KeyPart for T {}

/// Fallback: the value's type implements `Serialize`. Unbounded at the impl, bounded at the
/// method, so that a value with neither impl resolves here and reports [`KeyPart`].
pub trait ViaSerialize<T: ?Sized> {
    /// Writes the value into the key.
    ///
    /// # Errors
    /// The value's serialization error.
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>
    where
        T: KeyPart;
}

impl<T: ?Sized> ViaSerialize<T> for &KeyArg<'_, T> {
    #[inline]
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>
    where
        T: KeyPart,
    {
        w.value(self.0)
    }
}

/// Where `manager = <expr>` gets its manager: an `IdempotencyManager`, a reference to one, or
/// an `Arc`/`Box` of one. Cloned (one reference-count increment) so the function's body may
/// move whatever the expression borrowed.
#[diagnostic::on_unimplemented(
    message = "`manager = ...` must give an `IdempotencyManager`, not `{Self}`",
    label = "expected an `IdempotencyManager`, a reference to one, or an `Arc` of one"
)]
pub trait ManagerSource {
    /// The manager.
    fn __idempotency_manager(&self) -> IdempotencyManager;
}

impl ManagerSource for IdempotencyManager {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        self.clone()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for &T {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for Arc<T> {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for Box<T> {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

/// What a caller-supplied idempotency key (`key = <expr>`, `#[idempotency(key)]`) may be: a
/// string, or an `Option` of one (`None` is a missing key: `Error::InvalidKey`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an idempotency key",
    label = "expected a string (`&str`, `String`, `Cow<str>`, ...) or an `Option` of one"
)]
pub trait CustomKey {
    /// The key, or `None` when missing.
    fn __idempotency_key(&self) -> Option<&str>;
}

impl CustomKey for str {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl CustomKey for String {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl CustomKey for Cow<'_, str> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl<T: CustomKey + ?Sized> CustomKey for &T {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for &mut T {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Box<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Arc<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Rc<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey> CustomKey for Option<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        self.as_ref().and_then(CustomKey::__idempotency_key)
    }
}

/// The receiver of a method whose `#[idempotent]` does not say whether it is part of the key,
/// for autoref dispatch: `(&&&ReceiverCheck(&x)).receiver_is_not_in_the_key()` resolves to a
/// deprecated method (a warning at the receiver) when `x` is `NormalizeKey` or `Serialize`, and
/// to a silent one otherwise.
#[allow(missing_debug_implementations)]
pub struct ReceiverCheck<'a, T: ?Sized>(pub &'a T);

/// The receiver implements `NormalizeKey`.
pub trait NormalizeReceiver {
    /// Warns that the receiver is left out of the key.
    #[deprecated(
        note = "this method's receiver implements `NormalizeKey` but is not part of its idempotency key, so calls on different receivers with the same arguments share one record and replay its result; write `#[idempotent(include_self)]` to key by the receiver, or `#[idempotent(include_self = false)]` to leave it out"
    )]
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: NormalizeKey + ?Sized> NormalizeReceiver for &&ReceiverCheck<'_, T> {}

/// The receiver implements `Serialize`.
pub trait SerializeReceiver {
    /// Warns that the receiver is left out of the key.
    #[deprecated(
        note = "this method's receiver implements `Serialize` but is not part of its idempotency key, so calls on different receivers with the same arguments share one record and replay its result; write `#[idempotent(include_self)]` to key by the receiver, or `#[idempotent(include_self = false)]` to leave it out"
    )]
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: Serialize + ?Sized> SerializeReceiver for &ReceiverCheck<'_, T> {}

/// The receiver can be neither serialized nor normalized: nothing to say.
pub trait OtherReceiver {
    /// Does nothing.
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: ?Sized> OtherReceiver for ReceiverCheck<'_, T> {}
