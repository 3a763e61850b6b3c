//! A small idempotent pipeline with the core `Pipeline` API, on the embedded file store in a
//! temporary directory: a welcome email is sent at most once per sign-up. A transient error (the
//! mail server is down) is not stored, so the retry runs again; a permanent one (a bad address)
//! is stored and replayed; every result carries its provenance; `status` reads the record.
//!
//! ```sh
//! cargo run --example pipeline
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use idempotency::{FileStorage, IdempotencyManager, IdempotentPipeline, Pipeline, RecordStatus};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct SignUp {
    user_id: u64,
    email: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum MailError {
    /// Permanent: stored and replayed for the failure TTL.
    BadAddress(String),
    /// Transient: the claim is released and the next call runs again.
    ServerDown,
}

/// The step: its logic in `run`, the framework around it.
struct WelcomeEmail {
    server_up: AtomicBool,
    sent: AtomicUsize,
}

impl Pipeline for WelcomeEmail {
    const NAME: &'static str = "mail::welcome"; // starts every key: `mail::welcome:<32 hex>`
    type Input = SignUp; // forms the key
    type Output = String; // the message id, stored and replayed
    type Error = MailError;

    fn ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(7 * 24 * 3600))
    }
    fn is_transient(&self, e: &MailError) -> bool {
        *e == MailError::ServerDown
    }
    fn run(&self, s: &SignUp) -> Result<String, MailError> {
        if !s.email.contains('@') {
            return Err(MailError::BadAddress(s.email.clone()));
        }
        if !self.server_up.load(Ordering::SeqCst) {
            return Err(MailError::ServerDown);
        }
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("msg-{n}-user-{}", s.user_id))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let step = WelcomeEmail {
        server_up: AtomicBool::new(false),
        sent: AtomicUsize::new(0),
    };
    let welcome = IdempotentPipeline::new(
        step,
        IdempotencyManager::new(FileStorage::open(dir.path())?),
    );
    let ada = SignUp {
        user_id: 7,
        email: "ada@example.com".into(),
    };

    let down = welcome.execute(&ada)?; // transient error: nothing stored
    assert_eq!(down.value, Err(MailError::ServerDown));
    assert_eq!(welcome.status(&ada)?.status(), None);

    welcome.pipeline().server_up.store(true, Ordering::SeqCst);
    let sent = welcome.execute(&ada)?; // runs: sends
    let again = welcome.execute(&ada)?; // replays: sends nothing
    assert!(!sent.is_replayed() && again.is_replayed());
    assert_eq!(again.value, sent.value);
    assert_eq!(again.provenance.execution_id, sent.provenance.execution_id);
    println!("{:?}, replayed: {}", again.value, again.is_replayed());

    let bad = SignUp {
        user_id: 8,
        email: "nobody".into(),
    };
    let refused = welcome.execute(&bad)?; // permanent error: stored
    assert!(welcome.execute(&bad)?.is_replayed());
    assert_eq!(refused.value, Err(MailError::BadAddress("nobody".into())));

    let status = welcome.status(&ada)?;
    assert_eq!(status.status(), Some(RecordStatus::Success));
    println!(
        "{}: {:?}, {:?} left",
        status.key,
        status.status(),
        status.time_to_live()
    );
    assert_eq!(welcome.pipeline().sent.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn pipeline_sends_once_and_retries_only_transient_errors() {
    main().unwrap();
}
