//! Helpers shared by the file store tests: child processes (the test binary re-executed with a
//! role), raw keys, directory listings.
#![allow(dead_code)]

#[path = "../support/mod.rs"]
mod support;
#[allow(unused_imports)] // each test crate uses a different part
pub use support::{Kid, Tmpfs};

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use idempotency_core::IdempotencyKey;

/// The environment variable that selects a child's role.
pub const ROLE: &str = "IDEMPOTENCY_FILE_TEST_ROLE";
/// The store directory handed to a child.
pub const DIR: &str = "IDEMPOTENCY_FILE_TEST_DIR";
/// An extra argument handed to a child (a side-effect file, a key name).
pub const ARG: &str = "IDEMPOTENCY_FILE_TEST_ARG";

/// The role this process was started with, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR).expect("child without a store directory"))
}

pub fn child_arg() -> String {
    std::env::var(ARG).expect("child without an argument")
}

/// Starts this test binary again, running only `test` (which must dispatch on [`role`]), with
/// stdin and stdout piped.
pub fn spawn(test: &str, role: &str, dir: &Path, arg: &str) -> Kid {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(ARG, arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Kid(child)
}

/// The child's stdout, line by line.
pub fn lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().unwrap()).lines()
}

/// Reads lines until one starts with `CHILD:<marker>`; returns the rest of that line.
pub fn expect_marker(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    let prefix = format!("CHILD:{marker}");
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest prints `test <name> ... ` before the test's own output, on the same line.
        if let Some(i) = line.find(&prefix) {
            return line[i + prefix.len()..].trim().to_owned();
        }
    }
    panic!("the child exited before printing {prefix}");
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Prints a marker line for the parent (stdout is line-buffered).
pub fn say(marker: &str) {
    println!("CHILD:{marker}");
}

/// An `IdempotencyKey` holding exactly `s`, bypassing validation (the type is a serde newtype
/// over `String`, and postcard encodes both alike).
pub fn raw_key(s: &str) -> IdempotencyKey {
    let bytes = postcard::to_stdvec(&s.to_owned()).unwrap();
    postcard::from_bytes(&bytes).unwrap()
}

/// Every path under `dir` (recursively, not following symbolic links), relative to `dir`.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Writers may rename or remove entries while this walks (a temporary file renamed onto its
    // record): an entry that vanished between listing and inspecting is simply not there.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => panic!("read_dir {}: {e}", d.display()),
        };
        for e in entries {
            let p = match e {
                Ok(e) => e.path(),
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("read_dir entry in {}: {e}", d.display()),
            };
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => panic!("inspect {}: {e}", p.display()),
            };
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Temporary files (`.<hex>.<hex>.tmp`) under the store directory `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}
