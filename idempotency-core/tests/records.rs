//! Stored-record integrity at the codec level (SEMANTICS.md scenarios 26 and 29): every
//! malformed byte string is a typed error naming its location, never a panic; the stores' own
//! scenario-26 tests (file, Redis) build on this.

use idempotency_core::{ErrorKind, Fingerprint, IdempotencyKey, Owner, Record, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

fn sample() -> Record {
    let key = IdempotencyKey::derive("records::t", 1, &1_u8)
        .unwrap_or_else(|e| panic!("{e}"))
        .key;
    let owner = Owner {
        execution_id: uuid::Uuid::from_u128(7),
        fencing_token: 3,
    };
    let mut r = Record::pending(
        key,
        Fingerprint([9; 32]),
        owner,
        Timestamp(1_000),
        Duration::from_secs(5),
    );
    r.finish(
        idempotency_core::RecordStatus::Success,
        Timestamp(2_000),
        Duration::from_secs(60),
    );
    r.result = vec![1, 2, 3];
    r
}

#[test]
fn scenario_26_corrupt_bytes_are_typed_errors_naming_the_location() {
    let good = sample().encode().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Record::decode(&good, "here").ok(), Some(sample()));
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        b"IDR".to_vec(),
        b"XYZ\x01".to_vec(),
        b"garbage that is not a record".to_vec(),
    ];
    for cut in [4, 5, good.len() / 2, good.len() - 1] {
        cases.push(good[..cut].to_vec());
    }
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push(trailing);
    for bytes in cases {
        let err = Record::decode(&bytes, "the location")
            .err()
            .unwrap_or_else(|| panic!("{bytes:?} decoded"));
        assert_eq!(err.kind(), ErrorKind::CorruptRecord, "{bytes:?}");
        assert!(err.to_string().contains("the location"));
    }
}

#[test]
fn scenario_29_foreign_format_version_is_incompatible() {
    let mut bytes = sample().encode().unwrap_or_else(|e| panic!("{e}"));
    bytes[3] = 99;
    let err = Record::decode(&bytes, "x")
        .err()
        .unwrap_or_else(|| panic!("decoded"));
    assert_eq!(err.kind(), ErrorKind::IncompatibleRecord);
}

proptest! {
    #[test]
    fn scenario_26_decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut with_header = vec![b'I', b'D', b'R', Record::FORMAT_VERSION];
        with_header.extend_from_slice(&bytes);
        for b in [&bytes, &with_header] {
            if let Err(e) = Record::decode(b, "fuzz") {
                prop_assert!(matches!(e.kind(), ErrorKind::CorruptRecord | ErrorKind::IncompatibleRecord));
            }
        }
    }
}
