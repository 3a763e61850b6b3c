//! Capturing `tracing` events in tests that run in parallel threads: one process-wide
//! subscriber (installed once, so callsite interest is never cached against a missing
//! subscriber) routes each event to the buffer of the thread that emitted it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The events one test captured. Tests run in parallel threads; one process-wide subscriber
/// (installed once, so callsite interest is never cached against a missing subscriber) routes
/// each event to the buffer of the thread that emitted it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl Captured {
    pub fn messages(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e.get("message").cloned())
            .collect()
    }
    pub fn events(&self) -> Vec<BTreeMap<String, String>> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's events going to `cap`.
pub fn capture<R>(cap: &Captured, f: impl FnOnce() -> R) -> R {
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        if tracing::subscriber::set_global_default(Router).is_err() {
            panic!("another global subscriber is set");
        }
    });
    SINK.with(|s| *s.borrow_mut() = Some(cap.clone()));
    let r = f();
    SINK.with(|s| *s.borrow_mut() = None);
    r
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

struct Router;

impl Subscriber for Router {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "idempotency"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut fields = BTreeMap::new();
        fields.insert("level".into(), e.metadata().level().to_string());
        e.record(&mut Fields(&mut fields));
        SINK.with(|s| {
            if let Some(cap) = s.borrow().as_ref() {
                if let Ok(mut v) = cap.0.lock() {
                    v.push(fields);
                }
            }
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
