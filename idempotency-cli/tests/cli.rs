//! The `idempotency` CLI against a file store holding records in every status (Pending,
//! Success, Failed, expired) plus corrupt and foreign-version files, in both output formats,
//! with its exit codes; and, with the `redis` feature and a Redis available, against a Redis
//! store (the PostgreSQL cases are in `postgres.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The root package's Redis test harness, shared.
#[cfg(feature = "redis")]
#[path = "../../tests/redis/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use idempotency::{
    block_on, Claim, ClaimRequest, Clock, DerivedKey, FileStorage, IdempotencyKey, ManualClock,
    Owner, RecordError, Storage, StorageAdmin, SystemClock, Timestamp,
};
use serde_json::Value;

const HOUR: Duration = Duration::from_secs(3600);
/// 2023-11-14T22:13:20.123Z: when the expired records were written.
const PAST: Timestamp = Timestamp(1_700_000_000_123);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

fn cli(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idempotency"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("IDEMPOTENCY_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the idempotency binary");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn derive(op: &str, arg: &str) -> DerivedKey {
    IdempotencyKey::derive(op, 1, &arg).unwrap()
}

fn claim<S: Storage>(store: &S, key: &DerivedKey, lease: Duration) -> Owner {
    let req = ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: key.fingerprint,
        lease,
        refresh: false,
    };
    match block_on(store.try_claim(&key.key, &req)).unwrap() {
        Claim::Acquired { owner, .. } => owner,
        other => panic!("expected to acquire {}: {other:?}", key.key),
    }
}

fn succeed<S: Storage>(store: &S, key: &DerivedKey, result: &[u8], ttl: Duration) -> Owner {
    let owner = claim(store, key, Duration::from_secs(60));
    block_on(store.complete(&key.key, &owner, result, ttl)).unwrap();
    owner
}

/// The keys seeded into every fixture store, by what they hold.
struct Keys {
    pending: DerivedKey,
    pending_owner: Owner,
    success: DerivedKey,
    success_owner: Owner,
    failed: DerivedKey,
    expired_success: DerivedKey,
    expired_pending: DerivedKey,
    corrupt: DerivedKey,
    foreign: DerivedKey,
}

/// Seeds any store: `at_past` sets the store clock to [`PAST`], `at_now` back to now.
fn seed<S: Storage>(store: &S, at_past: impl Fn(), at_now: impl Fn()) -> Keys {
    let k = Keys {
        pending: derive("billing::charge", "pending"),
        pending_owner: Owner {
            execution_id: uuid::Uuid::nil(),
            fencing_token: 0,
        },
        success: derive("billing::charge", "success"),
        success_owner: Owner {
            execution_id: uuid::Uuid::nil(),
            fencing_token: 0,
        },
        failed: derive("email::send", "failed"),
        expired_success: derive("billing::refund", "expired-success"),
        expired_pending: derive("billing::refund", "expired-pending"),
        corrupt: derive("ledger::post", "corrupt"),
        foreign: derive("ledger::post", "foreign"),
    };
    at_past();
    succeed(store, &k.expired_success, b"old", Duration::from_secs(600));
    claim(store, &k.expired_pending, Duration::from_secs(60)); // a holder that crashed
    at_now();
    let pending_owner = claim(store, &k.pending, HOUR);
    let success_owner = succeed(store, &k.success, b"hello", HOUR);
    let owner = claim(store, &k.failed, Duration::from_secs(60));
    let err = RecordError::NotRetained("too large".into());
    block_on(store.fail(&k.failed.key, &owner, &err, HOUR)).unwrap();
    succeed(store, &k.corrupt, b"x", HOUR);
    succeed(store, &k.foreign, b"y", HOUR);
    Keys {
        pending_owner,
        success_owner,
        ..k
    }
}

/// A temporary directory with a file store in `store/`, seeded, plus corrupt and
/// foreign-version record files.
struct Fixture {
    tmp: tempfile::TempDir,
    store: FileStorage,
    keys: Keys,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let now = SystemClock.now();
        let clock = ManualClock::new(now);
        let store = FileStorage::builder(tmp.path().join("store"))
            .clock(Arc::new(clock.clone()))
            .open()
            .unwrap();
        let keys = seed(&store, || clock.set(PAST), || clock.set(now));
        std::fs::write(store.record_path(&keys.corrupt.key), b"garbage").unwrap();
        let foreign = store.record_path(&keys.foreign.key);
        let mut bytes = std::fs::read(&foreign).unwrap();
        bytes[3] = 9; // a record format version this build does not read
        std::fs::write(&foreign, bytes).unwrap();
        Fixture { tmp, store, keys }
    }

    fn url(&self) -> String {
        format!("file://{}", self.store.dir().display())
    }

    /// Runs the CLI on this store.
    fn run(&self, args: &[&str]) -> Run {
        let url = self.url();
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        cli(self.tmp.path(), &all, &[])
    }

    fn path(&self, key: &DerivedKey) -> PathBuf {
        self.store.record_path(&key.key)
    }
}

fn statuses(items: &Value) -> Vec<String> {
    let mut s: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

fn keys_of(items: &Value) -> Vec<String> {
    let mut k: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str().map(str::to_owned))
        .collect();
    k.sort();
    k
}

fn sorted(keys: &[&DerivedKey]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().map(|d| d.key.to_string()).collect();
    k.sort();
    k
}

const ALL_STATUSES: [&str; 7] = [
    "expired",
    "expired",
    "failed",
    "pending",
    "success",
    "unreadable",
    "unreadable",
];

#[test]
fn list_shows_every_status_and_the_unreadable_files() {
    let f = Fixture::new();
    let run = f.run(&["list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["count"], 7);
    assert_eq!(statuses(&v["items"]), ALL_STATUSES);
    assert!(v["next_cursor"].is_null());
    let unreadable: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "unreadable")
        .map(|i| {
            let loc = i["location"].as_str().unwrap().to_owned();
            (loc, i["error_kind"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut want = vec![
        (
            f.path(&f.keys.corrupt).display().to_string(),
            "corrupt_record".to_owned(),
        ),
        (
            f.path(&f.keys.foreign).display().to_string(),
            "incompatible_record".to_owned(),
        ),
    ];
    want.sort();
    let mut got = unreadable;
    got.sort();
    assert_eq!(got, want);

    let human = f.run(&["list"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.starts_with("STATUS"), "{}", human.stdout);
    for k in [&f.keys.pending, &f.keys.success, &f.keys.failed] {
        assert!(human.stdout.contains(k.key.as_str()), "{}", human.stdout);
    }
    assert!(
        human.stdout.contains("2023-11-14T22:23:20.123Z"),
        "expired success's expiry"
    );
    assert!(human.stdout.contains("7 entries"));
}

#[test]
fn list_filters_by_status_operation_and_key_prefix() {
    let f = Fixture::new();
    let keys = |args: &[&str]| {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        let run = f.run(&all);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()["items"].clone()
    };
    let k = &f.keys;
    assert_eq!(
        keys_of(&keys(&["--status", "expired"])),
        sorted(&[&k.expired_success, &k.expired_pending])
    );
    assert_eq!(
        keys_of(&keys(&["--status", "pending"])),
        sorted(&[&k.pending])
    );
    assert_eq!(
        keys_of(&keys(&["--status", "success"])),
        sorted(&[&k.success])
    );
    assert_eq!(
        keys_of(&keys(&["--status", "failed"])),
        sorted(&[&k.failed])
    );
    assert_eq!(
        statuses(&keys(&["--status", "unreadable"])),
        ["unreadable"; 2]
    );
    assert_eq!(
        keys_of(&keys(&["--operation", "email::send"])),
        sorted(&[&k.failed])
    );
    assert_eq!(
        keys_of(&keys(&["--prefix", "billing::"])),
        sorted(&[
            &k.pending,
            &k.success,
            &k.expired_success,
            &k.expired_pending
        ])
    );
    assert_eq!(
        keys_of(&keys(&["--prefix", "billing::", "--status", "expired"])),
        sorted(&[&k.expired_success, &k.expired_pending])
    );
    // A bad status value is a usage error.
    assert_eq!(f.run(&["list", "--status", "done"]).code, 2);
}

#[test]
fn list_pages_with_limit_and_cursor_without_skipping() {
    let f = Fixture::new();
    for (filter, want) in [(None, 7), (Some("expired"), 2)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut args = vec!["list", "--json", "--limit", "2"];
            if let Some(s) = filter {
                args.extend(["--status", s]);
            }
            if let Some(c) = &cursor {
                args.extend(["--cursor", c.as_str()]);
            }
            let run = f.run(&args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            let v = run.json();
            let items = v["items"].as_array().unwrap();
            assert!(items.len() <= 2, "{items:?}");
            seen.extend(items.iter().map(|i| {
                i["key"]
                    .as_str()
                    .or(i["location"].as_str())
                    .unwrap()
                    .to_owned()
            }));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!((n, seen.len()), (want, want), "{filter:?}: {seen:?}");
    }
    let human = f.run(&["list", "--limit", "3"]);
    assert!(human.stdout.contains("more: --cursor "), "{}", human.stdout);
    assert_eq!(f.run(&["list", "--limit", "0"]).code, 2);
    assert_eq!(
        f.run(&["list", "--cursor", "../etc"]).code,
        2,
        "a foreign cursor"
    );
}

#[test]
fn show_prints_every_field_of_a_record() {
    let f = Fixture::new();
    let k = &f.keys;
    let v = f.run(&["show", k.success.key.as_str(), "--json"]).json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["key"], k.success.key.as_str());
    assert_eq!(v["operation"], "billing::charge");
    assert_eq!(v["execution_id"], k.success_owner.execution_id.to_string());
    assert_eq!(v["fencing_token"], 1);
    assert_eq!(v["fingerprint"], k.success.fingerprint.to_string());
    assert_eq!(v["result_bytes"], 5);
    assert!(v["error_kind"].is_null());
    let ttl = v["ttl_remaining_ms"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000, "{ttl}");
    let expires = v["expires_at_ms"].as_u64().unwrap();
    assert_eq!(expires - v["created_at_ms"].as_u64().unwrap(), 3_600_000);

    let human = f.run(&["show", k.success.key.as_str()]);
    assert_eq!(human.code, 0);
    for label in [
        "status",
        "created at",
        "expires at",
        "ttl remaining",
        "execution id",
        "fencing token",
        "fingerprint",
        "result size",
        "error kind",
    ] {
        assert!(human.stdout.contains(label), "{label}: {}", human.stdout);
    }
    assert!(human.stdout.contains("5 bytes"));

    let failed = f.run(&["show", k.failed.key.as_str(), "--json"]).json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_kind"], "not_retained");
    assert_eq!(failed["error_reason"], "too large");

    let pending = f.run(&["show", k.pending.key.as_str(), "--json"]).json();
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["execution_id"],
        k.pending_owner.execution_id.to_string()
    );
    assert_eq!(pending["lease_until_ms"], pending["expires_at_ms"]);

    let expired = f
        .run(&["show", k.expired_success.key.as_str(), "--json"])
        .json();
    assert_eq!(expired["status"], "expired");
    assert_eq!(expired["stored_status"], "success");
    assert_eq!(expired["created_at"], "2023-11-14T22:13:20.123Z");
    assert_eq!(expired["created_at_ms"], 1_700_000_000_123_u64);
    assert_eq!(expired["ttl_remaining_ms"], 0);
    let human = f.run(&["show", k.expired_success.key.as_str()]).stdout;
    assert!(
        human.contains("2023-11-14T22:13:20.123Z (1700000000123 ms)"),
        "{human}"
    );
}

#[test]
fn show_exit_codes_for_unknown_bad_and_corrupt_keys() {
    let f = Fixture::new();
    let unknown = derive("billing::charge", "never-stored");
    let run = f.run(&["show", unknown.key.as_str()]);
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("no record"), "{}", run.stderr);
    let json = f.run(&["show", unknown.key.as_str(), "--json"]).json();
    assert_eq!(json["error"]["kind"], "unknown_key");
    assert_eq!(json["error"]["exit_code"], 4);

    assert_eq!(f.run(&["show", "not-a-key"]).code, 2);
    let corrupt = f.run(&["show", f.keys.corrupt.key.as_str(), "--json"]);
    assert_eq!(corrupt.code, 1);
    assert_eq!(corrupt.json()["error"]["kind"], "corrupt_record");
}

#[test]
fn delete_refuses_a_live_pending_record_unless_forced() {
    let f = Fixture::new();
    let k = &f.keys;
    let pending = k.pending.key.as_str();
    let run = f.run(&["delete", pending]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(
        f.run(&["delete", pending, "--json"]).json()["error"]["kind"],
        "refused"
    );
    assert_eq!(f.run(&["show", pending]).code, 0, "still there");
    let forced = f.run(&["delete", pending, "--force", "--json"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(forced.json()["deleted"], true);
    assert_eq!(f.run(&["show", pending]).code, 4);

    // An expired Pending record (a crashed holder) needs no force; nor do finished ones.
    assert_eq!(f.run(&["delete", k.expired_pending.key.as_str()]).code, 0);
    let ok = f.run(&["delete", k.success.key.as_str()]);
    assert_eq!(ok.code, 0);
    assert!(ok.stdout.contains("deleted"), "{}", ok.stdout);
    assert!(!f.path(&k.success).exists());
    assert_eq!(f.run(&["delete", k.success.key.as_str()]).code, 4, "gone");
    // An unreadable record can be deleted by its key.
    assert_eq!(f.run(&["delete", k.corrupt.key.as_str()]).code, 0);
    assert!(!f.path(&k.corrupt).exists());
}

#[test]
fn purge_expired_removes_only_expired_records() {
    let f = Fixture::new();
    let run = f.run(&["purge-expired", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["removed"], 2);
    let left = f.run(&["list", "--json"]).json();
    assert_eq!(
        statuses(&left["items"]),
        ["failed", "pending", "success", "unreadable", "unreadable"]
    );
    assert!(f.run(&["purge-expired"]).stdout.contains("removed 0"));
}

#[test]
fn stats_counts_by_status_unreadable_ttl_and_bytes() {
    let f = Fixture::new();
    let v = f.run(&["stats", "--json"]).json();
    assert_eq!(v["records"], 5);
    assert_eq!(v["by_status"]["pending"], 1);
    assert_eq!(v["by_status"]["success"], 1);
    assert_eq!(v["by_status"]["failed"], 1);
    assert_eq!(v["by_status"]["expired"], 2);
    assert_eq!(v["unreadable"], 2);
    assert_eq!(v["live"], 3);
    assert_eq!(v["result_bytes"], 8, "b\"hello\" + b\"old\"");
    let avg = v["avg_ttl_remaining_ms"].as_u64().unwrap();
    assert!(avg > 0 && avg <= 3_600_000, "{avg}");
    let human = f.run(&["stats"]).stdout;
    let line = |label: &str| {
        human
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {human}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert_eq!(line("unreadable"), "2");
    assert_eq!(line("expired"), "2");
    assert_eq!(line("result bytes"), "8");
}

#[test]
fn scenario_26_doctor_finds_unreadable_records_and_fix_removes_them() {
    let f = Fixture::new();
    let run = f.run(&["doctor"]);
    assert_eq!(run.code, 1, "problems found: {}", run.stdout);
    assert!(run
        .stdout
        .contains(&f.path(&f.keys.corrupt).display().to_string()));
    assert!(run.stdout.contains("doctor --fix"));
    let v = f.run(&["doctor", "--json"]).json();
    assert_eq!(v["problems_remaining"], 2);
    assert_eq!(v["unreadable"].as_array().unwrap().len(), 2);
    assert!(
        f.path(&f.keys.corrupt).exists(),
        "doctor alone changes nothing"
    );

    let fixed = f.run(&["doctor", "--fix", "--json"]);
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
    let v = fixed.json();
    assert_eq!(v["removed"], 2);
    assert_eq!(v["problems_remaining"], 0);
    assert!(!f.path(&f.keys.corrupt).exists() && !f.path(&f.keys.foreign).exists());
    assert_eq!(
        f.run(&["stats", "--json"]).json()["records"],
        5,
        "readable ones kept"
    );
    assert_eq!(f.run(&["doctor"]).code, 0);
}

#[test]
fn scenario_23_store_url_errors_have_their_own_exit_codes() {
    let f = Fixture::new();
    let cwd = f.tmp.path();
    let bad = cli(cwd, &["--store", "ftp://x", "list", "--json"], &[]);
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json()["error"]["kind"], "config");
    assert!(bad.stderr.contains("unknown store URL"), "{}", bad.stderr);
    assert_eq!(cli(cwd, &["list"], &[("IDEMPOTENCY_URL", "nope")]).code, 2);
    // Usage errors.
    assert_eq!(cli(cwd, &["frobnicate"], &[]).code, 2);
    assert_eq!(cli(cwd, &["show"], &[]).code, 2);

    // Unreachable: nothing listens on port 1 (a binary built without Redis says how to get
    // it); a missing directory; a plain file.
    let redis = cli(
        cwd,
        &["--store", "redis://127.0.0.1:1", "stats", "--json"],
        &[],
    );
    if cfg!(feature = "redis") {
        assert_eq!(redis.code, 3, "{}", redis.stderr);
        assert_eq!(redis.json()["error"]["kind"], "store_unavailable");
    } else {
        assert_eq!(redis.code, 2, "{}", redis.stderr);
        assert_eq!(redis.json()["error"]["kind"], "config");
        assert!(
            redis.stderr.contains("--features redis"),
            "{}",
            redis.stderr
        );
    }
    let tls = cli(
        cwd,
        &["--store", "rediss://127.0.0.1:1", "stats", "--json"],
        &[],
    );
    if cfg!(feature = "redis-tls") {
        assert_eq!(tls.code, 3, "{}", tls.stderr);
        assert_eq!(tls.json()["error"]["kind"], "store_unavailable");
    } else {
        assert_eq!(tls.code, 2, "{}", tls.stderr);
        assert!(
            tls.stderr.contains("--features redis-tls"),
            "{}",
            tls.stderr
        );
    }
    let pg = cli(
        cwd,
        &["--store", "postgres://u@127.0.0.1:1/db", "stats", "--json"],
        &[],
    );
    if cfg!(feature = "postgres") {
        assert_eq!(pg.code, 3, "{}", pg.stderr);
        assert_eq!(pg.json()["error"]["kind"], "store_unavailable");
    } else {
        assert_eq!(pg.code, 2, "{}", pg.stderr);
        assert_eq!(pg.json()["error"]["kind"], "config");
        assert!(pg.stderr.contains("--features postgres"), "{}", pg.stderr);
    }
    let missing = cwd.join("no-such-store");
    let url = format!("file://{}", missing.display());
    assert_eq!(cli(cwd, &["--store", &url, "list"], &[]).code, 3);
    assert!(!missing.exists(), "the CLI never creates a store");
    let file = cwd.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let url = format!("file://{}", file.display());
    assert_eq!(cli(cwd, &["--store", &url, "stats"], &[]).code, 3);
}

#[test]
fn the_store_comes_from_the_environment_or_the_default_directory() {
    let f = Fixture::new();
    let cwd = f.tmp.path();
    let from_env = cli(cwd, &["stats", "--json"], &[("IDEMPOTENCY_URL", &f.url())]);
    assert_eq!(from_env.code, 0, "{}", from_env.stderr);
    assert_eq!(from_env.json()["records"], 5);
    // A relative file URL and the default `.idempotency`, both under the working directory.
    let rel = cli(cwd, &["--store", "file://store", "stats", "--json"], &[]);
    assert_eq!(rel.json()["records"], 5);
    assert_eq!(cli(cwd, &["stats"], &[]).code, 3, "no .idempotency yet");
    std::fs::rename(cwd.join("store"), cwd.join(".idempotency")).unwrap();
    let default = cli(cwd, &["stats", "--json"], &[]);
    assert_eq!(default.json()["records"], 5);
}

// ---------------------------------------------------------------------------------------------
// A real Redis (IDEMPOTENCY_REDIS_URL, else a redis-server started here; skipped loudly
// otherwise, unless IDEMPOTENCY_REQUIRE_REDIS=1).

#[cfg(feature = "redis")]
#[test]
fn redis_every_command_against_a_real_redis() {
    use idempotency::redis::redis;
    use idempotency::RedisStorage;

    let test = "redis_every_command_against_a_real_redis";
    let Some(target) = harness::Target::get(test) else {
        return;
    };
    // Glob characters in the prefix must be matched literally; a neighbour store whose
    // prefix the unescaped pattern would match must stay out of the listing.
    let base = harness::unique_prefix(test);
    let prefix = format!("{base}*[a]?:");
    let neighbour = format!("{base}X[a]Y:");
    let store = RedisStorage::builder(target.url.clone())
        .prefix(prefix.clone())
        .open()
        .unwrap();
    let other = store.clone().prefix(neighbour.clone());
    succeed(&other, &derive("billing::charge", "neighbour"), b"n", HOUR);
    // Redis keeps its own clock: "expired" records are short-lived ones past their TTL.
    let expired = derive("billing::refund", "vanishing");
    succeed(&store, &expired, b"old", Duration::from_millis(1));
    let keys = seed(&store, || {}, || {});
    let mut conn = target.sync_connection();
    let corrupt_key = store.record_key(&keys.corrupt.key);
    let _: () = redis::cmd("SET")
        .arg(&corrupt_key)
        .arg("garbage")
        .query(&mut conn)
        .unwrap();
    let foreign_key = store.record_key(&keys.foreign.key);
    let _: () = redis::cmd("DEL")
        .arg(&foreign_key)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&foreign_key)
        .arg("a")
        .arg("hash")
        .query(&mut conn)
        .unwrap();
    // Wait for the 1 ms TTL on Redis's clock (its own expiry; no clock to inject).
    while block_on(store.get(&expired.key)).unwrap().is_some() {
        std::thread::yield_now();
    }

    let tmp = tempfile::tempdir().unwrap();
    let run_in = |prefix: &str, args: &[&str]| {
        let mut all = vec!["--store", target.url.as_str(), "--redis-prefix", prefix];
        all.extend_from_slice(args);
        cli(tmp.path(), &all, &[])
    };
    let run = |args: &[&str]| run_in(&prefix, args);
    let list = run(&["list", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v = list.json();
    // The seeded "expired" records are at PAST only on a store with an injected clock; on
    // Redis they are live, and the 1 ms one has vanished (native expiry).
    assert_eq!(
        statuses(&v["items"]),
        [
            "failed",
            "pending",
            "pending",
            "success",
            "success",
            "unreadable",
            "unreadable"
        ],
        "{v}"
    );
    for page_size in ["1", "3"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut args = vec!["list", "--json", "--limit", page_size];
            if let Some(c) = &cursor {
                args.extend(["--cursor", c.as_str()]);
            }
            let v = run(&args).json();
            seen.extend(v["items"].as_array().unwrap().iter().map(|i| {
                i["key"]
                    .as_str()
                    .or(i["location"].as_str())
                    .unwrap()
                    .to_owned()
            }));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 7, "{seen:?}");
    }

    let show = run(&["show", keys.success.key.as_str(), "--json"]).json();
    assert_eq!(show["status"], "success");
    assert_eq!(show["result_bytes"], 5);
    assert_eq!(run(&["show", derive("x", "none").key.as_str()]).code, 4);
    assert_eq!(run(&["delete", keys.pending.key.as_str()]).code, 1);
    assert_eq!(
        run(&["delete", keys.pending.key.as_str(), "--force"]).code,
        0
    );
    let stats = run(&["stats", "--json"]).json();
    assert_eq!(stats["records"], 4);
    assert_eq!(stats["unreadable"], 2);
    assert_eq!(run(&["purge-expired", "--json"]).json()["removed"], 0);

    assert_eq!(run(&["doctor"]).code, 1);
    let fixed = run(&["doctor", "--fix", "--json"]);
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
    assert_eq!(fixed.json()["removed"], 2);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&corrupt_key)
        .arg(&foreign_key)
        .query(&mut conn)
        .unwrap();
    assert_eq!(exists, 0);
    // The neighbour store was never listed nor touched.
    let n = run_in(&neighbour, &["stats", "--json"]);
    assert_eq!(n.json()["records"], 1);
    // remove_unreadable refuses keys outside the store's own pattern.
    let err = block_on(store.remove_unreadable(&format!("{neighbour}{{x}}"))).unwrap_err();
    assert_eq!(err.kind(), idempotency::ErrorKind::Config);

    harness::cleanup(&mut conn, &base);
}

// ---------------------------------------------------------------------------------------------
// Finding a record from a user's own inputs (`key`, and the selectors of `show` and `delete`),
// reading what is stored, bare paths, the lease boundary.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use idempotency::{idempotent, IdempotencyManager, KeyEncoder, RecordStatus};

/// The key the CLI prints for `args` (after `key`).
fn cli_key(args: &[&str]) -> String {
    let tmp = std::env::temp_dir();
    let mut all = vec!["key"];
    all.extend_from_slice(args);
    let run = cli(&tmp, &all, &[]);
    assert_eq!(run.code, 0, "key {args:?}: {}", run.stderr);
    run.stdout.trim_end().to_owned()
}

fn lib_key<T: serde::Serialize + ?Sized>(op: &str, value: &T) -> String {
    IdempotencyKey::derive(op, 1, value)
        .unwrap()
        .key
        .to_string()
}

#[test]
fn key_from_json_matches_the_library_for_integers_strings_maps_sequences_options() {
    let op = "billing::charge";
    let check = |json: &str, expected: String| {
        assert_eq!(
            cli_key(&["--operation", op, "--value-json", json]),
            expected,
            "--value-json {json}"
        );
        // `--value-json V` is the one-argument `--args-json [V]`.
        let list = format!("[{json}]");
        assert_eq!(
            cli_key(&["--operation", op, "--args-json", &list]),
            expected,
            "--args-json {list}"
        );
    };
    check("42", lib_key(op, &42_u8));
    check("42", lib_key(op, &42_i64));
    check("42", lib_key(op, &42_usize));
    check("-7", lib_key(op, &-7_i32));
    check("18446744073709551615", lib_key(op, &u64::MAX));
    check("2.5", lib_key(op, &2.5_f64));
    check("5.0", lib_key(op, &5.0_f32));
    check("true", lib_key(op, &true));
    check(r#""EUR""#, lib_key(op, &"EUR"));
    check(r#""EUR""#, lib_key(op, &String::from("EUR")));
    check("[1,2,3]", lib_key(op, &vec![1_u32, 2, 3]));
    check("[]", lib_key(op, &Vec::<String>::new()));
    check("null", lib_key(op, &None::<u32>));
    check(r#"{"$some":5}"#, lib_key(op, &Some(5_u32)));
    check(r#"{"$some":null}"#, lib_key(op, &Some(None::<u32>)));
    check(
        r#"[{"$some":"a"},null]"#,
        lib_key(op, &vec![Some("a"), None]),
    );
    let hm: HashMap<String, u32> = [("b".into(), 2), ("a".into(), 1)].into();
    check(r#"{"a":1,"b":2}"#, lib_key(op, &hm));
    check(r#"{"b":2,"a":1}"#, lib_key(op, &hm));
    let bm: BTreeMap<String, Vec<Option<i64>>> = [("x".into(), vec![Some(-1), None])].into();
    check(r#"{"x":[{"$some":-1},null]}"#, lib_key(op, &bm));
    // Integers and floats, strings and numbers, None and a missing argument stay apart.
    assert_ne!(lib_key(op, &5_u32), lib_key(op, &5.0_f64));
    assert_ne!(
        cli_key(&["--operation", op, "--value-json", "5"]),
        cli_key(&["--operation", op, "--value-json", "5.0"])
    );
    assert_ne!(
        cli_key(&["--operation", op, "--args-json", "[]"]),
        cli_key(&["--operation", op, "--args-json", "[null]"])
    );
}

#[test]
fn key_with_several_arguments_scope_version_custom_key_and_prefix_matches_the_library() {
    let op = "shop::Orders::place";
    let mut enc = KeyEncoder::new(op, 3);
    enc.scope(&"tenant-7")
        .arg(&42_u64)
        .arg(&"EUR")
        .arg(&Some(3_u8));
    let expected = enc.finish().unwrap();
    let args = [
        "--operation",
        op,
        "--args-json",
        r#"[42, "EUR", {"$some": 3}]"#,
        "--scope",
        "tenant-7",
        "--version",
        "3",
    ];
    assert_eq!(cli_key(&args), expected.key.to_string());
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let tmp = std::env::temp_dir();
    let mut all = vec!["key"];
    all.extend_from_slice(&json_args);
    let v = cli(&tmp, &all, &[]).json();
    assert_eq!(v["fingerprint"], expected.fingerprint.to_string());

    // A non-string scope.
    let mut enc = KeyEncoder::new(op, 1);
    enc.scope(&7_u64).arg(&1_u8);
    let scoped = enc.finish().unwrap().key.to_string();
    assert_eq!(
        cli_key(&["--operation", op, "--scope-json", "7", "--args-json", "[1]"]),
        scoped
    );
    assert_ne!(
        cli_key(&["--operation", op, "--scope", "7", "--args-json", "[1]"]),
        scoped,
        "the string \"7\" is another scope than the number 7"
    );

    // A caller-supplied key: the arguments do not change the key.
    let mut enc = KeyEncoder::new(op, 1);
    enc.scope(&"tenant-7").custom_key("order-42");
    let custom = enc.finish().unwrap().key.to_string();
    let base = [
        "--operation",
        op,
        "--custom-key",
        "order-42",
        "--scope",
        "tenant-7",
    ];
    assert_eq!(cli_key(&base), custom);
    let mut with_args = base.to_vec();
    with_args.extend(["--args-json", "[1, 2]"]);
    assert_eq!(cli_key(&with_args), custom);

    // A `Prefixed` store's namespace: the key as the store beneath holds it.
    let prefixed = cli_key(&[
        "--operation",
        op,
        "--custom-key",
        "order-42",
        "--scope",
        "tenant-7",
        "--key-prefix",
        "eu",
    ]);
    let store = idempotency::Prefixed::new((), "eu").unwrap();
    let key = enc_key(op, "tenant-7", "order-42");
    assert_eq!(prefixed, store.stored_key(&key).to_string());
    assert_eq!(prefixed, format!("eu/{custom}"));
    // A prefix `Prefixed` refuses is a usage error, not a key no store can hold.
    let run = cli(
        &std::env::temp_dir(),
        &[
            "key",
            "--operation",
            op,
            "--custom-key",
            "order-42",
            "--key-prefix",
            "eu/west",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("contains `/`"), "{}", run.stderr);
}

fn enc_key(op: &str, scope: &str, custom: &str) -> IdempotencyKey {
    let mut enc = KeyEncoder::new(op, 1);
    enc.scope(&scope).custom_key(custom);
    enc.finish().unwrap().key
}

#[test]
fn key_usage_errors_name_the_missing_or_malformed_input() {
    let tmp = std::env::temp_dir();
    let run = cli(&tmp, &["key", "--operation", "x"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--custom-key"), "{}", run.stderr);
    let run = cli(&tmp, &["key", "--operation", "x", "--args-json", "42"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("JSON array"), "{}", run.stderr);
    let run = cli(
        &tmp,
        &["key", "--operation", "x", "--args-json", "[oops"],
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not JSON"), "{}", run.stderr);
    let run = cli(&tmp, &["key", "--custom-key", "k"], &[]);
    assert_eq!(run.code, 2, "selectors need --operation");
    let run = cli(&tmp, &["key", "--operation", "x", "--custom-key", ""], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("empty"), "{}", run.stderr);
}

// `#[idempotent]` functions on a file store, found again from their inputs alone.

static MACRO_STORE: LazyLock<PathBuf> = LazyLock::new(|| {
    // Under cargo's per-target temporary directory, not /tmp: a static is never dropped, so
    // nothing would remove it.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "idempotency-cli-macro-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
});
static MACRO_MANAGER: LazyLock<IdempotencyManager> =
    LazyLock::new(|| IdempotencyManager::new(FileStorage::open(&*MACRO_STORE).unwrap()));

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum PayError {
    Declined(String),
    Idempotency(idempotency::Error),
}

impl From<idempotency::Error> for PayError {
    fn from(e: idempotency::Error) -> Self {
        PayError::Idempotency(e)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Receipt {
    order: u64,
    cents: i64,
    note: String,
}

#[idempotent(manager = &*MACRO_MANAGER, scope = customer)]
fn charge(
    customer: &str,
    order: u64,
    lines: Vec<i64>,
    coupon: Option<u32>,
    tags: BTreeMap<String, String>,
) -> Result<Receipt, PayError> {
    let _ = (&coupon, &tags);
    if order == 43 {
        return Err(PayError::Declined(format!(
            "order {order}: insufficient funds"
        )));
    }
    Ok(Receipt {
        order,
        cents: lines.iter().sum(),
        note: "ok \"paid\"".into(),
    })
}

#[idempotent(manager = &*MACRO_MANAGER)]
fn refund(#[idempotency(key)] request_id: &str, cents: u64) -> u64 {
    let _ = request_id;
    cents
}

#[test]
fn show_and_delete_find_a_macro_functions_record_from_its_arguments_on_the_file_store() {
    let tags: BTreeMap<String, String> = [("channel".into(), "web".into())].into();
    let receipt = charge("cust-7", 42, vec![1200, -200], Some(3), tags.clone()).unwrap();
    assert_eq!(receipt.cents, 1000);
    let declined = charge("cust-7", 43, vec![5], None, BTreeMap::new()).unwrap_err();
    assert!(matches!(declined, PayError::Declined(_)));
    assert_eq!(refund("rf-9", 300).unwrap(), 300);

    let store = format!("file://{}", MACRO_STORE.display());
    let tmp = std::env::temp_dir();
    let run = |args: &[&str]| {
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        cli(&tmp, &all, &[])
    };
    let op = "cli::charge";
    let select42 = [
        "--operation",
        op,
        "--scope",
        "cust-7",
        "--args-json",
        r#"["cust-7", 42, [1200, -200], {"$some": 3}, {"channel": "web"}]"#,
    ];
    let mut show = vec!["show"];
    show.extend_from_slice(&select42);
    show.push("--json");
    let v = run(&show);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let v = v.json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["operation"], op);
    assert_eq!(v["encoding"], "cbor");
    assert_eq!(v["record_format_version"], 2);
    assert_eq!(
        v["result"],
        r#"{"order": 42, "cents": 1000, "note": "ok \"paid\""}"#
    );
    assert_eq!(v["result_bytes"], 33, "the size README_CLI.md shows");
    let key = v["key"].as_str().unwrap().to_owned();
    // The same record by its key, and its key from `key`.
    let mut key_cmd = vec!["key"];
    key_cmd.extend_from_slice(&select42);
    assert_eq!(run(&key_cmd).stdout.trim_end(), key);
    let human = run(&["show", &key]).stdout;
    assert!(
        human.contains("CBOR (RFC 8949), record format version 2"),
        "{human}"
    );
    assert!(human.contains(r#"{"order": 42"#), "{human}");

    // Another argument value is another record: nothing found.
    let other = run(&[
        "show",
        "--operation",
        op,
        "--scope",
        "cust-7",
        "--args-json",
        r#"["cust-7", 42, [1200, -200], null, {"channel": "web"}]"#,
    ]);
    assert_eq!(other.code, 4, "{}", other.stdout);

    // The failed call: its stored error in words.
    let failed = run(&[
        "show",
        "--operation",
        op,
        "--scope",
        "cust-7",
        "--args-json",
        r#"["cust-7", 43, [5], null, {}]"#,
        "--json",
    ])
    .json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "Declined: order 43: insufficient funds");
    assert_eq!(
        failed["error_value"],
        r#"{"Declined": "order 43: insufficient funds"}"#
    );
    let failed_key = failed["key"].as_str().unwrap().to_owned();
    let raw = std::process::Command::new(env!("CARGO_BIN_EXE_idempotency"))
        .args(["--store", &store, "show", &failed_key, "--raw"])
        .output()
        .unwrap();
    let stored = FileStorage::open(&*MACRO_STORE).unwrap();
    let record = block_on(stored.get(&IdempotencyKey::parse(&failed_key).unwrap()))
        .unwrap()
        .unwrap()
        .record;
    match record.error {
        Some(RecordError::Encoded(bytes)) => assert_eq!(raw.stdout, bytes),
        other => panic!("expected a stored error: {other:?}"),
    }

    // A caller-supplied key: the operator needs only that key.
    let r = run(&[
        "show",
        "--operation",
        "cli::refund",
        "--custom-key",
        "rf-9",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["result"], "300");

    // `delete` takes the same selectors.
    let mut delete = vec!["delete"];
    delete.extend_from_slice(&select42);
    let d = run(&delete);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(run(&["show", &key]).code, 4);
    let _ = std::fs::remove_dir_all(&*MACRO_STORE);
}

#[test]
fn show_raw_writes_the_stored_bytes_and_show_bounds_what_it_prints() {
    let f = Fixture::new();
    let manager = IdempotencyManager::new(f.store.clone());
    let long = "x".repeat(10_000);
    let key = IdempotencyKey::derive("report::render", 1, &"long").unwrap();
    manager
        .execute_sync(&idempotency::Call::new(key.clone()), || long.clone())
        .unwrap();
    let stored = block_on(f.store.get(&key.key))
        .unwrap()
        .unwrap()
        .record
        .result;
    assert!(stored.len() > 10_000);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idempotency"))
        .args(["--store", &f.url(), "show", key.key.as_str(), "--raw"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout, stored,
        "--raw writes the stored bytes as they are"
    );
    // The seeded non-CBOR result too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idempotency"))
        .args([
            "--store",
            &f.url(),
            "show",
            f.keys.success.key.as_str(),
            "--raw",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hello");

    let human = f.run(&["show", key.key.as_str()]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.len() < 6_000, "{}", human.stdout.len());
    assert!(human.stdout.contains("show --full"), "{}", human.stdout);
    assert!(human.stdout.contains("10 bytes") || human.stdout.contains("bytes"));
    let full = f
        .run(&["show", key.key.as_str(), "--full", "--json"])
        .json();
    assert_eq!(full["result"], format!("\"{long}\""));
    assert_eq!(full["result_truncated"], false);
    let json = f.run(&["show", key.key.as_str(), "--json"]).json();
    assert_eq!(json["result_truncated"], true);
    assert_eq!(json["result_bytes"], stored.len());
    // --raw and --json exclude each other.
    assert_eq!(
        f.run(&["show", key.key.as_str(), "--raw", "--json"]).code,
        2
    );
}

#[test]
fn store_takes_a_bare_directory_path_and_says_so_once() {
    let f = Fixture::new();
    let abs = f.store.dir().display().to_string();
    let run = cli(f.tmp.path(), &["--store", &abs, "stats", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["records"], 5);
    assert_eq!(run.stderr.matches("no scheme").count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("file://{abs}")),
        "{}",
        run.stderr
    );
    // Relative to the working directory.
    let rel = cli(f.tmp.path(), &["--store", "store", "list"], &[]);
    assert_eq!(rel.code, 0, "{}", rel.stderr);
    assert_eq!(rel.stderr.matches("no scheme").count(), 1, "{}", rel.stderr);
    assert!(rel.stdout.contains("7 entries"), "{}", rel.stdout);
    // A missing directory is unreachable, never created.
    let missing = cli(f.tmp.path(), &["--store", "nope", "list"], &[]);
    assert_eq!(missing.code, 3);
    assert!(!f.tmp.path().join("nope").exists());
    // A URL is not a bare path: no note.
    assert!(!f.run(&["stats"]).stderr.contains("no scheme"));
}

#[test]
fn counts_say_one_entry_and_n_entries() {
    let f = Fixture::new();
    let one = f.run(&["list", "--status", "success"]);
    assert!(one.stdout.ends_with("\n1 entry\n"), "{}", one.stdout);
    let two = f.run(&["list", "--status", "expired"]);
    assert!(two.stdout.ends_with("\n2 entries\n"), "{}", two.stdout);
    let none = f.run(&["list", "--operation", "nothing::here"]);
    assert!(none.stdout.ends_with("\n0 entries\n"), "{}", none.stdout);
    let purged = f.run(&["purge-expired"]);
    assert_eq!(purged.stdout, "removed 2 expired records\n");
    let f = Fixture::new();
    f.run(&["delete", f.keys.expired_success.key.as_str()]);
    assert_eq!(
        f.run(&["purge-expired"]).stdout,
        "removed 1 expired record\n"
    );
}

/// The lease boundary on the file store: at `deadline - 1 ms` a `Pending` record is live for
/// takeover, `list --status`, `delete` and `purge-expired`; at exactly `deadline` and 1 ms
/// after, its lease has ended for all four (`now >= deadline`).
#[test]
fn lease_boundary_is_one_rule_for_takeover_list_delete_and_purge_on_the_file_store() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Timestamp(1_800_000_000_000);
    let clock = ManualClock::new(t0);
    let store = FileStorage::builder(tmp.path().join("store"))
        .clock(Arc::new(clock.clone()))
        .open()
        .unwrap();
    let url = format!("file://{}", store.dir().display());
    let lease = Duration::from_secs(10);
    let deadline = t0.as_millis() + 10_000;
    let key = derive("billing::charge", "boundary");
    let at = |ms: u64, args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        cli(
            tmp.path(),
            &all,
            &[("IDEMPOTENCY_CLI_TEST_NOW_MS", &ms.to_string())],
        )
    };
    let listed = |ms: u64, status: &str| {
        keys_of(&at(ms, &["list", "--status", status, "--json"]).json()["items"])
            .contains(&key.key.to_string())
    };
    let fresh = || {
        let _ = block_on(store.delete(&key.key));
        clock.set(t0);
        claim(&store, &key, lease);
    };
    for (ms, ended) in [
        (deadline - 1, false),
        (deadline, true),
        (deadline + 1, true),
    ] {
        fresh();
        assert_eq!(
            listed(ms, "pending"),
            !ended,
            "list --status pending at {ms}"
        );
        assert_eq!(
            listed(ms, "expired"),
            ended,
            "list --status expired at {ms}"
        );
        let show = at(ms, &["show", key.key.as_str(), "--json"]).json();
        assert_eq!(show["status"], if ended { "expired" } else { "pending" });

        let purge = at(ms, &["purge-expired", "--json"]).json();
        assert_eq!(purge["removed"], u64::from(ended), "purge-expired at {ms}");

        fresh();
        let delete = at(ms, &["delete", key.key.as_str()]);
        assert_eq!(
            delete.code,
            if ended { 0 } else { 1 },
            "delete at {ms}: {}",
            delete.stderr
        );

        fresh();
        clock.set(Timestamp(ms));
        let req = ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            fingerprint: key.fingerprint,
            lease,
            refresh: false,
        };
        let taken = match block_on(store.try_claim(&key.key, &req)).unwrap() {
            Claim::Acquired { takeover, .. } => takeover,
            Claim::Existing(o) => {
                assert_eq!(o.status(), RecordStatus::Pending);
                false
            }
        };
        assert_eq!(taken, ended, "takeover at {ms}");
    }
}

/// Redis's clock, in ms since the Unix epoch (`TIME`).
#[cfg(feature = "redis")]
fn redis_now_ms(conn: &mut idempotency::redis::redis::Connection) -> u64 {
    let (secs, micros): (u64, u64) = idempotency::redis::redis::cmd("TIME").query(conn).unwrap();
    secs * 1000 + micros / 1000
}

#[cfg(feature = "redis")]
#[test]
fn redis_selectors_find_records_show_decodes_them_and_an_empty_prefix_names_the_ones_seen() {
    use idempotency::RedisStorage;

    let test =
        "redis_selectors_find_records_show_decodes_them_and_an_empty_prefix_names_the_ones_seen";
    let Some(target) = harness::Target::get(test) else {
        return;
    };
    let prefix = harness::unique_prefix(test);
    let store = RedisStorage::builder(target.url.clone())
        .prefix(prefix.clone())
        .open()
        .unwrap();
    let manager = IdempotencyManager::new(store.clone());
    let op = "shop::Orders::place";
    let mut enc = KeyEncoder::new(op, 1);
    enc.scope(&"tenant-7").custom_key("order-42").arg(&42_u64);
    let custom = idempotency::Call::new(enc.finish().unwrap());
    manager.execute_sync(&custom, || vec![1_u32, 2]).unwrap();
    let lines: BTreeMap<String, Vec<i64>> = [("sku-1".into(), vec![2, -1])].into();
    let mut enc = KeyEncoder::new("billing::charge", 2);
    enc.scope(&"tenant-7")
        .arg(&7_u64)
        .arg(&lines)
        .arg(&None::<String>);
    let derived = idempotency::Call::new(enc.finish().unwrap());
    manager
        .execute_sync(&derived, || "charged".to_owned())
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let run_in = |prefix: &str, args: &[&str]| {
        let mut all = vec!["--store", target.url.as_str(), "--redis-prefix", prefix];
        all.extend_from_slice(args);
        cli(tmp.path(), &all, &[])
    };
    let run = |args: &[&str]| run_in(&prefix, args);

    let by_custom = run(&[
        "show",
        "--operation",
        op,
        "--custom-key",
        "order-42",
        "--scope",
        "tenant-7",
        "--json",
    ]);
    assert_eq!(by_custom.code, 0, "{}", by_custom.stderr);
    let v = by_custom.json();
    assert_eq!(v["key"], custom.key.as_str());
    assert_eq!(v["result"], "[1, 2]");
    // Without the scope it is another key.
    let unscoped = run(&["show", "--operation", op, "--custom-key", "order-42"]);
    assert_eq!(unscoped.code, 4);

    let by_args = [
        "--operation",
        "billing::charge",
        "--version",
        "2",
        "--scope",
        "tenant-7",
        "--args-json",
        r#"[7, {"sku-1": [2, -1]}, null]"#,
    ];
    let mut show = vec!["show"];
    show.extend_from_slice(&by_args);
    show.push("--json");
    let v = run(&show).json();
    assert_eq!(v["key"], derived.key.as_str());
    assert_eq!(v["result"], r#""charged""#);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idempotency"))
        .args([
            "--store",
            &target.url,
            "--redis-prefix",
            &prefix,
            "show",
            "--raw",
        ])
        .args(by_args)
        .output()
        .unwrap();
    let stored = block_on(store.get(&derived.key))
        .unwrap()
        .unwrap()
        .record
        .result;
    assert_eq!(out.stdout, stored);
    let mut delete = vec!["delete"];
    delete.extend_from_slice(&by_args);
    assert_eq!(run(&delete).code, 0);
    assert!(block_on(store.get(&derived.key)).unwrap().is_none());

    // A prefix with no records: a note names the prefixes a bounded SCAN saw.
    let empty = run_in("no-such-prefix:", &["list"]);
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(empty.stdout.ends_with("0 entries\n"), "{}", empty.stdout);
    assert!(
        empty
            .stderr
            .contains("no records under the Redis prefix `no-such-prefix:`")
            && empty.stderr.contains(&format!("`{prefix}`")),
        "{}",
        empty.stderr
    );
    let stats = run_in("no-such-prefix:", &["stats"]);
    assert!(
        stats.stderr.contains(&format!("`{prefix}`")),
        "{}",
        stats.stderr
    );
    // A prefix with records: no note.
    assert!(!run(&["list"]).stderr.contains("note:"));

    let mut conn = target.sync_connection();
    harness::cleanup(&mut conn, &prefix);
}

/// The lease boundary on Redis, whose clock cannot be injected: a `Pending` record whose lease
/// deadline Redis's own clock has reached (`now >= deadline`) is over for takeover, `list
/// --status` and `delete`, and one whose deadline is ahead is live for all three. (Redis
/// removes records itself when their key expires, so `purge-expired` removes nothing there.)
#[cfg(feature = "redis")]
#[test]
fn redis_lease_boundary_is_one_rule_for_takeover_list_and_delete() {
    use idempotency::RedisStorage;

    let test = "redis_lease_boundary_is_one_rule_for_takeover_list_and_delete";
    let Some(target) = harness::Target::get(test) else {
        return;
    };
    let prefix = harness::unique_prefix(test);
    let store = RedisStorage::builder(target.url.clone())
        .prefix(prefix.clone())
        .open()
        .unwrap();
    let mut conn = target.sync_connection();
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--store", target.url.as_str(), "--redis-prefix", &prefix];
        all.extend_from_slice(args);
        cli(tmp.path(), &all, &[])
    };
    let listed = |status: &str, key: &DerivedKey| {
        keys_of(&run(&["list", "--status", status, "--json"]).json()["items"])
            .contains(&key.key.to_string())
    };
    let ended: Vec<DerivedKey> = ["ended-1", "ended-2"]
        .iter()
        .map(|a| derive("billing::charge", a))
        .collect();
    let mut deadline = 0;
    for k in &ended {
        let req = ClaimRequest {
            execution_id: uuid::Uuid::new_v4(),
            fingerprint: k.fingerprint,
            lease: Duration::from_millis(1),
            refresh: false,
        };
        match block_on(store.try_claim(&k.key, &req)).unwrap() {
            Claim::Acquired { lease_until, .. } => deadline = deadline.max(lease_until.as_millis()),
            other => panic!("{other:?}"),
        }
    }
    let live = derive("billing::charge", "live");
    claim(&store, &live, HOUR);
    // Wait for Redis's clock to reach the deadline (its own clock; none to inject).
    while redis_now_ms(&mut conn) < deadline {
        std::thread::yield_now();
    }

    assert!(listed("expired", &ended[0]) && !listed("pending", &ended[0]));
    assert!(listed("pending", &live) && !listed("expired", &live));
    assert_eq!(
        run(&["show", ended[0].key.as_str(), "--json"]).json()["status"],
        "expired"
    );
    let d = run(&["delete", ended[0].key.as_str()]);
    assert_eq!(
        d.code, 0,
        "a lease that ended needs no --force: {}",
        d.stderr
    );
    let d = run(&["delete", live.key.as_str()]);
    assert_eq!(d.code, 1, "a live lease needs --force: {}", d.stderr);
    assert!(d.stderr.contains("--force"), "{}", d.stderr);

    let req = |k: &DerivedKey| ClaimRequest {
        execution_id: uuid::Uuid::new_v4(),
        fingerprint: k.fingerprint,
        lease: HOUR,
        refresh: false,
    };
    match block_on(store.try_claim(&ended[1].key, &req(&ended[1]))).unwrap() {
        Claim::Acquired { takeover, .. } => assert!(takeover),
        other => panic!("an ended lease is taken over: {other:?}"),
    }
    match block_on(store.try_claim(&live.key, &req(&live))).unwrap() {
        Claim::Existing(o) => assert_eq!(o.status(), RecordStatus::Pending),
        other => panic!("a live lease is not taken over: {other:?}"),
    }
    harness::cleanup(&mut conn, &prefix);
}
