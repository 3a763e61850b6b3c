//! The bodies of the fuzz targets: every input that reads untrusted bytes or text, with the
//! properties that must hold for *any* input (no panic, and an oracle per target).
//!
//! Driven by the libFuzzer binaries in `fuzz/fuzz_targets/` (`cargo fuzz run <target>`) and,
//! on a stable toolchain without cargo-fuzz, by `tests/fuzz_fallback.rs` in the workspace root,
//! which replays the committed corpus and a bounded number of mutations of it.
//!
//! | target | reads | checks |
//! |---|---|---|
//! | `record_decode` | a stored record's bytes (file contents, a Redis hash field) | decode never panics; errors are `CorruptRecord`/`IncompatibleRecord`; a decoded record re-encodes to an equal record; the claim and finish rules and the result decoders accept any decoded record |
//! | `key_validation` | a caller-supplied idempotency key, an operation name, a scope, arguments | `validate_custom_key` accepts exactly the documented keys; `IdempotencyKey::parse` round-trips; every derived key parses back; custom keys ignore the arguments but the fingerprint does not; map order, NaN payloads and `-0.0` never change a key |
//! | `file_path` | any key string as the file store maps it to a path | the record path is `<root>/<2 hex>/<64 hex>`, unique per key, and a real claim writes exactly there and nowhere else |
//! | `store_url` | `IDEMPOTENCY_URL` / `--store` text | parsing never panics; what it accepts matches the documented forms; everything else is `Error::Config` |
//! | `canonical_injectivity` | any bytes, read as choices of a value of every serde shape (`idempotency-core/tests/canonical_model`) | the canonical encoder: two values encode alike exactly when serde presents them alike (up to the documented normalizations), map and set order never matter, and a value serde refuses fails to encode |

// Fuzz targets report a broken property by panicking: that is how libFuzzer sees a crash.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use idempotency::StoreUrl;
use idempotency_core::{
    apply_finish, block_on, decide_claim, validate_custom_key, ClaimDecision, ClaimRequest,
    Durability, ErrorKind, FileStorage, Fingerprint, Finish, IdempotencyKey, IdempotencyManager,
    KeyEncoder, Observed, Record, RecordError, RecordStatus, Storage, Timestamp,
    MAX_CUSTOM_KEY_BYTES, MAX_OPERATION_BYTES,
};

/// The value model of the canonical encoder's property test, shared with
/// `idempotency-core/tests/canonical.rs`.
#[path = "../../idempotency-core/tests/canonical_model/mod.rs"]
mod canonical_model;

/// The names of the targets, as in `fuzz/Cargo.toml` and `fuzz/corpus/<name>/`.
pub const NAMES: [&str; 5] = [
    "record_decode",
    "key_validation",
    "file_path",
    "store_url",
    "canonical_injectivity",
];

/// Runs the target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "record_decode" => record_decode(data),
        "key_validation" => key_validation(data),
        "file_path" => file_path(data),
        "store_url" => store_url(data),
        "canonical_injectivity" => canonical_injectivity(data),
        other => panic!("no fuzz target named {other}"),
    }
}

/// Splits `data` at `0xff` bytes (never valid UTF-8) into text parts.
fn parts(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// A stored record's bytes, as a file or a Redis hash field holds them.
pub fn record_decode(data: &[u8]) {
    let rec = match Record::decode(data, "fuzz") {
        Ok(rec) => rec,
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::CorruptRecord | ErrorKind::IncompatibleRecord
                ),
                "decode error of kind {:?}: {e}",
                e.kind()
            );
            return;
        }
    };
    assert_ne!(
        rec.status,
        RecordStatus::Expired,
        "`Expired` is never stored"
    );
    let bytes = rec.encode().expect("a decoded record encodes");
    let again = Record::decode(&bytes, "fuzz").expect("a re-encoded record decodes");
    assert_eq!(again, rec, "encode/decode round trip");

    // Reading it: status, TTL, replay decoding, at both ends of time.
    for now in [Timestamp(0), rec.expires_at, Timestamp(u64::MAX)] {
        let obs = Observed {
            record: rec.clone(),
            now,
        };
        let _ = obs.status();
        let _ = obs.time_to_live();
        let _ = IdempotencyManager::decode_value::<String>(&obs);
        let _ = IdempotencyManager::decode_value::<u64>(&obs);
        let _ = IdempotencyManager::decode_value::<Vec<(String, Option<i32>)>>(&obs);
    }
    if let Some(RecordError::Encoded(e)) = &rec.error {
        let _ = postcard::from_bytes::<String>(e);
    }

    // The claim rule over it: a takeover's fence grows (saturating), the holder's own live claim
    // is kept, a live record is returned unchanged.
    let lease = Duration::from_millis(u64::from(rec.owner.fencing_token as u16) + 1);
    for (now, refresh) in [
        (rec.created_at, false),
        (rec.expires_at, false),
        (rec.expires_at, true),
        (Timestamp(u64::MAX), false),
    ] {
        let req = ClaimRequest {
            execution_id: rec.owner.execution_id,
            fingerprint: rec.fingerprint,
            lease,
            refresh,
        };
        match decide_claim(&rec.key, Some(rec.clone()), &req, now) {
            ClaimDecision::Write(new, _) => {
                assert_eq!(new.status, RecordStatus::Pending);
                assert!(
                    new.owner.fencing_token > rec.owner.fencing_token
                        || rec.owner.fencing_token == u64::MAX,
                    "a takeover raises the fencing token"
                );
            }
            ClaimDecision::Keep(_) => assert!(!rec.is_expired_at(now)),
        }
    }
    // The finish rule: only the holder of a Pending record may finish it; the same finish by
    // the same holder, already applied, is answered with the record unchanged.
    let finished = apply_finish(
        Some(rec.clone()),
        &rec.owner,
        Finish::Success(b"v"),
        lease,
        rec.created_at,
    );
    let already = rec.status == RecordStatus::Success && rec.result == b"v" && rec.error.is_none();
    assert_eq!(
        finished.is_some(),
        rec.status == RecordStatus::Pending || already
    );
    if already {
        assert_eq!(
            finished.as_ref(),
            Some(&rec),
            "an applied finish is kept as is"
        );
    }
    let mut stranger = rec.owner;
    stranger.fencing_token = stranger.fencing_token.wrapping_add(1);
    let err = RecordError::NotRetained("x".into());
    assert!(
        apply_finish(
            Some(rec.clone()),
            &stranger,
            Finish::Failed(&err),
            lease,
            rec.created_at
        )
        .is_none(),
        "a stale holder's write is refused"
    );
}

/// Key derivation and the validation of caller-supplied keys and printed keys.
pub fn key_validation(data: &[u8]) {
    let parts = parts(data);
    let custom = parts[0].as_str();
    let op = parts.get(1).map_or("fuzz::op", String::as_str);
    let scope = parts.get(2);
    let args: Vec<&str> = parts.iter().skip(3).map(String::as_str).collect();
    let version = data.len() as u32;

    // validate_custom_key accepts exactly the documented keys.
    let valid_custom = !custom.is_empty()
        && custom.len() <= MAX_CUSTOM_KEY_BYTES
        && !custom.chars().any(char::is_control);
    match validate_custom_key(custom) {
        Ok(()) => assert!(valid_custom, "accepted {custom:?}"),
        Err(e) => {
            assert!(!valid_custom, "refused {custom:?}: {e}");
            assert_eq!(e.kind(), ErrorKind::InvalidKey);
        }
    }
    let valid_op =
        !op.is_empty() && op.len() <= MAX_OPERATION_BYTES && !op.chars().any(char::is_control);

    // A printed key parses back to itself; anything else is InvalidKey.
    for s in &parts {
        match IdempotencyKey::parse(s) {
            Ok(k) => {
                assert_eq!(k.as_str(), s);
                assert_eq!(format!("{}:{}", k.operation(), k.hash_hex()), *s);
                assert_eq!(k.hash_hex().len(), 32);
                assert_eq!(IdempotencyKey::parse(&k.to_string()).unwrap(), k);
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidKey),
        }
    }

    let derive = |custom: Option<&str>, scope: Option<&String>, args: &[&str]| {
        let mut enc = KeyEncoder::new(op, version);
        if let Some(s) = scope {
            enc.scope(s);
        }
        if let Some(c) = custom {
            enc.custom_key(c);
        }
        enc.arg(args);
        enc.finish()
    };

    // Derived keys: valid operation ⇒ a key that parses back; deterministic.
    match derive(None, scope, &args) {
        Ok(d) => {
            assert!(valid_op, "derived a key for operation {op:?}");
            assert_eq!(IdempotencyKey::parse(d.key.as_str()).unwrap(), d.key);
            assert_eq!(d.key.operation(), op);
            assert_eq!(derive(None, scope, &args).unwrap(), d, "deterministic");
            // Different arguments, different key and fingerprint.
            let mut more = args.clone();
            more.push("");
            let other = derive(None, scope, &more).unwrap();
            assert_ne!(other.key, d.key);
            assert_ne!(other.fingerprint, d.fingerprint);
            // Scope isolates (scenario 19).
            let other_scope = format!("{}/other", scope.map_or("", String::as_str));
            assert_ne!(derive(None, Some(&other_scope), &args).unwrap().key, d.key);
        }
        Err(e) => {
            assert!(!valid_op, "refused operation {op:?}: {e}");
            assert_eq!(e.kind(), ErrorKind::InvalidKey);
        }
    }

    // Custom keys: validated; the key ignores the arguments, the fingerprint does not.
    match derive(Some(custom), scope, &args) {
        Ok(d) => {
            assert!(valid_op && valid_custom);
            // The raw custom key never reaches the key: only the operation and a hash do.
            // (An earlier check here, "the key does not contain the custom key", was wrong:
            // libFuzzer fed a derived key back as a custom key; see fuzz/regressions/.)
            assert_eq!(d.key.operation(), op);
            assert!(is_hex(d.key.hash_hex(), 32));
            let mut more = args.clone();
            more.push("x");
            let other = derive(Some(custom), scope, &more).unwrap();
            assert_eq!(other.key, d.key, "a custom key ignores the arguments");
            assert_ne!(other.fingerprint, d.fingerprint, "the fingerprint does not");
        }
        Err(e) => {
            assert!(
                !(valid_op && valid_custom),
                "refused {op:?}/{custom:?}: {e}"
            );
            assert_eq!(e.kind(), ErrorKind::InvalidKey);
        }
    }

    if !valid_op {
        return;
    }
    // Canonical encoding (scenario 17): map order never changes a key.
    let btree: BTreeMap<&str, usize> = args.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let hash: HashMap<&str, usize> = btree.iter().map(|(k, v)| (*k, *v)).rev().collect();
    let k1 = IdempotencyKey::derive(op, version, &btree).unwrap();
    let k2 = IdempotencyKey::derive(op, version, &hash).unwrap();
    assert_eq!(k1, k2, "map order changed the key");
    // Floats: every NaN is one NaN, -0.0 is 0.0.
    let mut raw = [0_u8; 8];
    for (i, b) in data.iter().take(8).enumerate() {
        raw[i] = *b;
    }
    let f = f64::from_bits(u64::from_le_bytes(raw));
    let canonical = if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    };
    assert_eq!(
        IdempotencyKey::derive(op, version, &f).unwrap(),
        IdempotencyKey::derive(op, version, &canonical).unwrap(),
        "float {f:?} ({:#x})",
        f.to_bits()
    );
}

struct PathStore {
    root: PathBuf,
    store: FileStorage,
}

fn path_store() -> &'static PathStore {
    static STORE: OnceLock<PathStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let root = scratch_dir();
        let _ = std::fs::remove_dir_all(&root);
        let store = FileStorage::builder(&root)
            .durability(Durability::Buffered)
            .open()
            .expect("open the fuzz store");
        PathStore {
            root: store.dir().to_path_buf(),
            store,
        }
    })
}

/// The scratch directory of the `file_path` target in this process (removed by
/// [`remove_scratch`]).
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("idempotency-fuzz-{}", std::process::id()))
}

/// Removes this process's scratch directory.
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// An `IdempotencyKey` holding exactly `s`, as a decoded record or a foreign writer could
/// (the type is a serde newtype over `String`).
fn raw_key(s: &str) -> IdempotencyKey {
    postcard::from_bytes(&postcard::to_stdvec(s).unwrap()).unwrap()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_path(root: &Path, path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let shard = path.parent().unwrap();
    assert_eq!(
        shard.parent().unwrap(),
        root,
        "{path:?} is not two levels under the root"
    );
    assert!(is_hex(&name, 64), "record file name {name:?}");
    assert_eq!(shard.file_name().unwrap().to_str().unwrap(), &name[..2]);
    name
}

/// The file store's mapping from any key string to a path, and a real claim through it.
pub fn file_path(data: &[u8]) {
    let ps = path_store();
    let text = String::from_utf8_lossy(data);
    let key = raw_key(&text);
    let path = ps.store.record_path(&key);
    let name = check_path(&ps.root, &path);
    // Keys are not normalized: case variants and a one-byte change map elsewhere.
    for variant in [
        text.to_uppercase(),
        text.to_lowercase(),
        format!("{text}\0"),
    ] {
        if variant != text {
            let other = ps.store.record_path(&raw_key(&variant));
            assert_ne!(
                check_path(&ps.root, &other),
                name,
                "{variant:?} aliases {text:?}"
            );
        }
    }
    // A claim writes exactly at that path, reads back as this key, and is removed by delete.
    let req = ClaimRequest {
        // A v4-shaped execution id from the input (postcard reads a Uuid from 16 bytes).
        execution_id: postcard::from_bytes(&execution_id_bytes(data)).unwrap(),
        fingerprint: Fingerprint([7; 32]),
        lease: Duration::from_secs(60),
        refresh: false,
    };
    block_on(ps.store.try_claim(&key, &req)).expect("claim");
    let meta = std::fs::symlink_metadata(&path).expect("the record is at its path");
    assert!(meta.is_file());
    let obs = block_on(ps.store.get(&key)).unwrap().expect("read back");
    assert_eq!(obs.record.key, key);
    let shard = path.parent().unwrap();
    for entry in std::fs::read_dir(shard).unwrap() {
        let n = entry.unwrap().file_name();
        let n = n.to_str().unwrap();
        assert!(
            n == ".lock" || is_hex(n, 64),
            "a foreign file {n:?} in {shard:?}"
        );
    }
    assert!(block_on(ps.store.delete(&key)).unwrap());
    assert!(!path.exists());
}

fn execution_id_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = vec![16_u8];
    out.extend(data.iter().copied().chain(std::iter::repeat(0x5a)).take(16));
    out
}

/// Store URL text (`IDEMPOTENCY_URL`, `--store`).
pub fn store_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t = text.trim();
    match StoreUrl::parse(&text) {
        Ok(StoreUrl::File(p)) => {
            let rest = t
                .strip_prefix("file://")
                .expect("a file URL starts with file://");
            assert!(!rest.is_empty());
            assert_eq!(p, PathBuf::from(rest));
        }
        Ok(StoreUrl::Memory) => assert!(t == "memory://" || t == "memory:"),
        Ok(StoreUrl::Redis(u)) => {
            assert!(u.starts_with("redis://") || u.starts_with("rediss://"));
            assert_eq!(u, t);
        }
        Ok(other) => panic!("an unknown store URL kind {other:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Config);
            let documented = t.starts_with("redis://")
                || t.starts_with("rediss://")
                || (t.starts_with("file://") && t.len() > "file://".len())
                || t == "memory://"
                || t == "memory:";
            assert!(!documented, "refused the valid URL {t:?}: {e}");
        }
    }
}

/// The canonical encoder (key format 2): `data` describes a value of every serde shape, compared
/// with itself, with near misses (up to 8 one-byte changes and 4 swaps, positions and values
/// taken from the input) and with the value its second half describes. Each pair must encode
/// alike exactly when the values are equal, and in any map or set order (see
/// `canonical_model::check_pair`).
pub fn canonical_injectivity(data: &[u8]) {
    use canonical_model::check_pair;
    check_pair(data, data);
    let n = data.len();
    if n == 0 {
        return;
    }
    for i in 0..n.min(8) {
        let mut near = data.to_vec();
        let pos = (usize::from(data[i]) * 31 + i) % n;
        near[pos] = data[n - 1 - i].wrapping_add(i as u8 + 1);
        check_pair(data, &near);
    }
    for i in 0..n.min(4) {
        let mut swapped = data.to_vec();
        swapped.swap(i, (usize::from(data[i]) + i + 1) % n);
        check_pair(data, &swapped);
    }
    let (x, y) = data.split_at(n / 2);
    check_pair(x, y);
}

/// Seed inputs for `name`: valid and nearly valid examples of what the target reads. The
/// committed corpus (`fuzz/corpus/<name>/`) starts from these (`tests/fuzz_fallback.rs` writes
/// them with `IDEMPOTENCY_FUZZ_WRITE_SEEDS=1`).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "record_decode" => record_seeds(),
        "key_validation" => [
            &b"order-1\xffbilling::charge\xfftenant-1\xffa\xffb"[..],
            b"\xffbilling::charge",
            b"a\nb\xffop",
            b"billing::charge:0123456789abcdef0123456789abcdef\xffop:x",
            b"op:0123456789ABCDEF0123456789abcdef",
            b"\xff\xff\xff",
            b"\x00\x00\x00\x00\x00\x00\xf8\x7f\xffop\xff\xff1\xff2",
            b"\x00\x00\x00\x00\x00\x00\x00\x80\xffop",
            "caf\u{e9}\u{ff}op".as_bytes(),
            "cafe\u{301}\u{ff}op".as_bytes(),
        ]
        .iter()
        .map(|s| s.to_vec())
        .chain([vec![b'k'; 255], vec![b'k'; 256], {
            let mut v = vec![b'k'; 10];
            v.push(0xff);
            v.extend(vec![b'o'; 201]);
            v
        }])
        .collect(),
        "file_path" => [
            "../../../outside",
            "/etc/passwd",
            "a/../../b",
            "\0",
            "CON",
            "*?[",
            "line\nbreak",
            "Key",
            "key",
            "caf\u{e9}",
            "cafe\u{301}",
            "op:0123456789abcdef0123456789abcdef",
            "",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([vec![b'x'; 10 << 10]])
        .collect(),
        "store_url" => [
            "file:///var/lib/app/idempotency",
            "file://relative/dir",
            "file://",
            "  file:///tmp/x  ",
            "memory://",
            "memory:",
            "redis://127.0.0.1:6379/0",
            "rediss://user:pass@host:6380/2",
            "redis://",
            "http://example.invalid",
            "",
            "FILE:///upper",
            "file:///tmp/\0nul",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "canonical_injectivity" => [
            &[][..],
            &[0],
            // Sparse { a: Some(0), b: None }, and a flattened `id` repeated in the map.
            &[1, 0, 7, 1, 1, 5, 1, 0, 0, 1, 0, 2, 0],
            // Every item shape once.
            &[
                2, 1, 0, 2, 3, 0, 0, 1, 4, 2, 1, 3, 5, 0, 2, 2, 6, 7, 8, 9, 10, 2, 3, 4,
            ],
            &[
                3, 3, 1, 0, 3, 6, 2, 1, 2, 3, 1, 1, 2, 7, 3, 1, 2, 0, 8, 3, 1, 2, 2, 9, 2,
            ],
            // Untagged values in a row, floats and integer widths.
            &[0, 0, 0, 0, 0, 2, 2, 1, 1, 3, 5, 6, 1, 2, 9, 2, 1, 0],
            // Unserializable variants (`skip_serializing`, `skip`).
            &[0, 0, 0, 0, 2, 1, 10, 1, 11],
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        other => panic!("no fuzz target named {other}"),
    }
}

fn record_seeds() -> Vec<Vec<u8>> {
    let key = IdempotencyKey::derive("fuzz::seed", 1, &"x").unwrap();
    let owner = |token: u64| idempotency_core::Owner {
        execution_id: postcard::from_bytes(&execution_id_bytes(&token.to_le_bytes())).unwrap(),
        fencing_token: token,
    };
    let pending = |token: u64, now: u64| {
        Record::pending(
            key.key.clone(),
            key.fingerprint,
            owner(token),
            Timestamp(now),
            Duration::from_secs(300),
        )
    };
    let mut success = pending(2, 1_700_000_000_000);
    success.finish(
        RecordStatus::Success,
        Timestamp(1_700_000_000_500),
        Duration::from_secs(3600),
    );
    success.result = postcard::to_stdvec("a result").unwrap();
    let mut failed = pending(1, 5);
    failed.finish(RecordStatus::Failed, Timestamp(6), Duration::from_secs(1));
    failed.error = Some(RecordError::Encoded(
        postcard::to_stdvec("an error").unwrap(),
    ));
    let mut not_retained = pending(3, 0);
    not_retained.finish(RecordStatus::Failed, Timestamp(u64::MAX), Duration::MAX);
    not_retained.error = Some(RecordError::NotRetained("too large".into()));
    let records = [
        pending(1, 1_700_000_000_000),
        pending(u64::MAX, u64::MAX),
        success,
        failed,
        not_retained,
    ];
    let mut out: Vec<Vec<u8>> = records.iter().map(|r| r.encode().unwrap()).collect();
    let first = out[0].clone();
    out.push(Vec::new());
    out.push(b"IDR".to_vec());
    out.push(first[..first.len() / 2].to_vec()); // truncated
    let mut v2 = first.clone();
    v2[3] = 2; // another format version
    out.push(v2);
    let mut trailing = first;
    trailing.push(0);
    out.push(trailing);
    out
}
