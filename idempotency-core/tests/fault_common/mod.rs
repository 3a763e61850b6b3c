//! Fault tests shared by every store (the file store here, Redis in the workspace's
//! `tests/redis/`, which includes this module by path): child processes, the kill-point matrix
//! and the soak. A store plugs in with an [`Opener`], a function that builds a manager from an
//! opaque location string (a directory, a Redis URL and prefix) with a given lease, so a child
//! process (this test binary re-executed) reaches the same store as its parent.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod kill_matrix;
pub mod soak;

#[path = "../support/mod.rs"]
mod support;
#[allow(unused_imports)] // each test crate uses a different part
pub use support::{Kid, Tmpfs};

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use idempotency_core::{block_on, Call, IdempotencyKey, IdempotencyManager, RecordStatus};

/// Builds a manager over the store at `location` with the lease `lease`.
pub type Opener = fn(location: &str, lease: Duration) -> IdempotencyManager;

/// The environment variable that selects a child's role.
pub const ROLE: &str = "IDEMPOTENCY_FAULT_ROLE";
/// The store location handed to a child.
pub const LOCATION: &str = "IDEMPOTENCY_FAULT_LOCATION";
/// An extra argument handed to a child.
pub const ARG: &str = "IDEMPOTENCY_FAULT_ARG";

/// The role this process was started with, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

pub fn location() -> String {
    std::env::var(LOCATION).expect("child without a store location")
}

pub fn arg() -> String {
    std::env::var(ARG).expect("child without an argument")
}

/// Starts this test binary again running only `test`, as `role`, with extra environment.
pub fn spawn(test: &str, role: &str, location: &str, arg: &str, env: &[(&str, &str)]) -> Kid {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(LOCATION, location)
        .env(ARG, arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Kid(cmd.spawn().unwrap())
}

/// The child's stdout, line by line.
pub fn lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().unwrap()).lines()
}

/// Reads lines until one contains `marker`; returns the rest of that line, trimmed.
pub fn expect_marker(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest prints `test <name> ... ` before the test's own output, on the same line.
        if let Some(i) = line.find(marker) {
            return line[i + marker.len()..].trim().to_owned();
        }
    }
    panic!("the child exited before printing {marker}");
}

/// Prints a marker line for the parent.
pub fn say(marker: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "CHILD:{marker}").unwrap();
    out.flush().unwrap();
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

/// Waits until the process `pid` is stopped (state `T` in /proc), for at most a minute.
pub fn wait_stopped(pid: u32) {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // `pid (comm) S ...`: the state follows the last `)`.
        let state = stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .chars()
            .next();
        if state == Some('T') {
            return;
        }
        assert!(Instant::now() < give_up, "process {pid} never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Appends one line to a side-effect log (one `write(2)` with `O_APPEND`, so lines from
/// several processes never interleave).
pub fn append_line(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The lines of a side-effect log (none when it does not exist).
pub fn read_lines(path: &str) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// A call for `name` under the fault tests' operation.
pub fn call(name: &str) -> Call {
    Call::new(IdempotencyKey::derive("faults::kill", 1, name).unwrap())
}

/// Waits (real time, polling the store's own view) until the record of `call` is expired or
/// gone, for at most a minute.
pub fn wait_until_expired(m: &IdempotencyManager, call: &Call) {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match block_on(m.status(&call.key)).unwrap() {
            None => return,
            Some(o) if o.status() == RecordStatus::Expired => return,
            Some(o) => {
                assert!(Instant::now() < give_up, "the record never expired");
                std::thread::sleep(o.time_to_live().min(Duration::from_millis(100)));
            }
        }
    }
}
