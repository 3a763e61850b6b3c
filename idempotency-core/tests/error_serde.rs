//! Issue 13: `idempotency::Error` as data. It serializes as its kind, message and causes, reads
//! back with the same kind (so a user's error enum can carry it to a web handler's 409/422/400
//! mapping), converts into `io::Error` and `String`, and is detected inside a user's value; and
//! the manager's entry point for errors that are never stored.

use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency_core::{
    Call, Error, ErrorKind, IdempotencyKey, IdempotencyManager, MemoryStorage, Timestamp,
};
use serde::{Deserialize, Serialize};

fn key() -> IdempotencyKey {
    IdempotencyKey::derive("billing::charge", 1, &("order-1", 1200_u64))
        .unwrap()
        .key
}

fn roundtrip(e: &Error) -> Error {
    let bytes = postcard::to_stdvec(e).unwrap();
    postcard::from_bytes(&bytes).unwrap()
}

fn every_kind() -> Vec<Error> {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    vec![
        Error::InProgress {
            key: key(),
            lease_until: Timestamp(1_700_000_000_000),
        },
        Error::FingerprintMismatch { key: key() },
        Error::InvalidKey { reason: "empty" },
        Error::Config("zero ttl".into()),
        Error::storage("claim", io),
        Error::Io {
            operation: "open",
            path: "/tmp/x".into(),
            source: std::io::Error::other("disk full"),
        },
        Error::LeaseLost { key: key() },
        Error::CorruptRecord {
            key: "k".into(),
            reason: "truncated".into(),
        },
        Error::IncompatibleRecord {
            key: "k".into(),
            reason: "version".into(),
        },
        Error::ResultNotRetained {
            key: key(),
            reason: "too big".into(),
        },
        Error::CompletionNotRecorded {
            key: key(),
            encoded: vec![1],
            source: Box::new(Error::storage("complete", std::io::Error::other("gone"))),
        },
        Error::Encode {
            what: "an argument",
            message: "bad".into(),
        },
    ]
}

#[test]
fn issue_13_every_error_reads_back_with_its_kind_message_and_causes() {
    for e in every_kind() {
        let back = roundtrip(&e);
        assert_eq!(back.kind(), e.kind(), "{e}");
        assert_eq!(back.to_string(), e.to_string());
        let Error::Decoded { causes, .. } = &back else {
            panic!("reads back as Error::Decoded: {back:?}");
        };
        let mut expected = Vec::new();
        let mut next = std::error::Error::source(&e);
        while let Some(c) = next {
            expected.push(c.to_string());
            next = c.source();
        }
        assert_eq!(causes, &expected, "{e}");
        // A decoded error serializes as itself.
        let again = roundtrip(&back);
        assert_eq!(again.kind(), e.kind());
        assert_eq!(again.to_string(), e.to_string());
    }
    let storage = roundtrip(&Error::storage(
        "claim",
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
    ));
    assert!(matches!(storage, Error::Decoded { causes, .. } if causes == ["refused"]));
}

#[test]
fn issue_13_error_kind_names_are_stable_and_unknown_names_are_refused() {
    for e in every_kind() {
        let k = e.kind();
        assert_eq!(ErrorKind::from_name(k.as_str()), Some(k));
    }
    assert_eq!(ErrorKind::InProgress.as_str(), "in_progress");
    assert_eq!(
        ErrorKind::FingerprintMismatch.as_str(),
        "fingerprint_mismatch"
    );
    assert_eq!(ErrorKind::InvalidKey.as_str(), "invalid_key");
    assert_eq!(ErrorKind::from_name("teapot"), None);
    let bytes = postcard::to_stdvec("teapot").unwrap();
    assert!(postcard::from_bytes::<ErrorKind>(&bytes).is_err());
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
enum PaymentError {
    #[error("card declined: {0}")]
    Declined(String),
    #[error(transparent)]
    Idempotency(#[from] Error),
}

#[test]
fn issue_13_a_user_enum_carries_the_error_with_its_kind() {
    let e = PaymentError::from(Error::FingerprintMismatch { key: key() });
    let bytes = postcard::to_stdvec(&e).unwrap();
    let back: PaymentError = postcard::from_bytes(&bytes).unwrap();
    assert!(
        matches!(back, PaymentError::Idempotency(i) if i.kind() == ErrorKind::FingerprintMismatch)
    );
}

#[test]
fn issue_13_is_carried_by_finds_the_error_anywhere_in_a_value() {
    let conflict = || Error::InvalidKey { reason: "empty" };
    assert!(Error::is_carried_by(&conflict()));
    assert!(Error::is_carried_by(&PaymentError::Idempotency(conflict())));
    assert!(Error::is_carried_by(&vec![
        None,
        Some(Box::new(conflict()))
    ]));
    assert!(!Error::is_carried_by(&PaymentError::Declined("no".into())));
    assert!(!Error::is_carried_by(&"in_progress"));
    // Nested checks do not lose the outer answer.
    struct Outer;
    impl Serialize for Outer {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let e = Error::InvalidKey { reason: "x" };
            let _ = Error::is_carried_by(&1_u8);
            e.serialize(s)
        }
    }
    assert!(Error::is_carried_by(&Outer));
}

/// Shapes whose serialization has no length up front (`#[serde(flatten)]` makes a struct a map
/// of unknown length; an iterator without an exact size hint is a sequence of unknown length)
/// still show the error they carry, so it is never stored as the function's failure.
#[test]
fn issue_13_is_carried_by_sees_through_flatten_and_unsized_sequences() {
    #[derive(Serialize)]
    struct Context {
        request: String,
    }
    #[derive(Serialize)]
    struct ApiError {
        #[serde(flatten)]
        context: Context,
        cause: Option<Error>,
    }
    let e = ApiError {
        context: Context {
            request: "r-1".into(),
        },
        cause: Some(Error::InvalidKey { reason: "empty" }),
    };
    assert!(Error::is_carried_by(&e));
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let errors = [Error::InvalidKey { reason: "x" }];
            s.collect_seq(errors.iter().filter(|_| true))
        }
    }
    assert!(Error::is_carried_by(&Unsized));
}

#[test]
fn issue_13_io_error_and_string_carry_the_error() {
    let e: std::io::Error = Error::InProgress {
        key: key(),
        lease_until: Timestamp(0),
    }
    .into();
    assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
    let inner = e.into_inner().unwrap().downcast::<Error>().unwrap();
    assert_eq!(inner.kind(), ErrorKind::InProgress);
    let e: std::io::Error = Error::InvalidKey { reason: "empty" }.into();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e: std::io::Error = Error::Io {
        operation: "open",
        path: "/x".into(),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no"),
    }
    .into();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    let s: String = Error::Config("zero ttl".into()).into();
    assert_eq!(s, "invalid configuration: zero ttl");
}

#[test]
fn issue_13_try_execute_transient_replays_ok_and_never_stores_an_error() {
    let m = IdempotencyManager::new(MemoryStorage::new());
    let runs = AtomicUsize::new(0);
    let ok = Call::new(IdempotencyKey::derive("op", 1, &1_u8).unwrap());
    let body = |r: Result<u8, std::io::Error>| {
        runs.fetch_add(1, Ordering::SeqCst);
        r
    };
    let first = m.try_execute_transient_sync(&ok, || body(Ok(7))).unwrap();
    let again = m.try_execute_transient_sync(&ok, || body(Ok(8))).unwrap();
    assert!(!first.is_replayed() && again.is_replayed());
    assert_eq!(again.value.unwrap(), 7);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let err = Call::new(IdempotencyKey::derive("op", 1, &2_u8).unwrap());
    for _ in 0..2 {
        let out = m
            .try_execute_transient_sync(&err, || body(Err(std::io::Error::other("timeout"))))
            .unwrap();
        assert!(!out.is_replayed());
        assert_eq!(out.value.unwrap_err().to_string(), "timeout");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the error released the claim"
    );
}
