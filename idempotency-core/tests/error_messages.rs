//! Issue 13, item 6: store errors print where and why; `source()` keeps the backend's error.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

use idempotency_core::Error;

#[test]
fn a_file_store_io_error_names_the_path_and_the_class_of_cause() {
    let e = Error::Io {
        operation: "create",
        path: PathBuf::from("/var/lib/app/idempotency"),
        source: io::Error::from_raw_os_error(13), // EACCES
    };
    assert_eq!(
        e.to_string(),
        "idempotency file store: create `/var/lib/app/idempotency`: permission denied"
    );
    let source = e.source().expect("the I/O error");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn a_custom_io_error_keeps_its_own_message() {
    let e = Error::Io {
        operation: "write",
        path: PathBuf::from("store/x.rec"),
        source: io::Error::other("injected fault"),
    };
    assert_eq!(
        e.to_string(),
        "idempotency file store: write `store/x.rec`: injected fault"
    );
}

#[test]
fn a_storage_error_with_a_reason_prints_it_and_keeps_the_source() {
    let e = Error::storage_with_reason(
        "claim",
        "kv 10.0.0.7:9000: timed out",
        io::Error::from(io::ErrorKind::TimedOut),
    );
    assert_eq!(
        e.to_string(),
        "idempotency store unavailable during claim: kv 10.0.0.7:9000: timed out"
    );
    assert!(e.source().is_some_and(|s| s.is::<io::Error>()));
    assert!(e.is_store_unavailable());
}

#[test]
fn a_storage_error_without_a_reason_prints_the_source_message() {
    let e = Error::storage("get", "backend said no");
    assert_eq!(
        e.to_string(),
        "idempotency store unavailable during get: backend said no"
    );
    assert_eq!(
        e.source().map(|s| s.to_string()).as_deref(),
        Some("backend said no")
    );
}
