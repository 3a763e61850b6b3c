//! Replicated writes (SEMANTICS.md scenario 25): `WAIT numreplicas timeout` after a claim, a
//! completion and a renewal, failing closed when too few replicas acknowledge.

use std::fmt;
use std::time::Duration;

use idempotency_core::Error;

use crate::error::Target;

/// How many replicas must acknowledge a write, and how long to wait for them
/// ([`RedisConfig::wait_for_replicas`](crate::RedisConfig::wait_for_replicas)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replication {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl Replication {
    /// The `WAIT` command.
    pub(crate) fn wait_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas)
            .arg(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        cmd
    }

    /// `Ok` when `acknowledged` replicas are enough, else the store error for `operation`.
    pub(crate) fn check(
        &self,
        target: &Target,
        operation: &'static str,
        acknowledged: i64,
    ) -> Result<(), Error> {
        if acknowledged >= i64::from(self.replicas) {
            return Ok(());
        }
        let e = NotReplicated {
            operation,
            acknowledged: u32::try_from(acknowledged.max(0)).unwrap_or(0),
            required: self.replicas,
            timeout: self.timeout,
        };
        Err(Error::storage_with_reason(
            operation,
            format!("{}: {e}", target.name),
            e,
        ))
    }
}

/// Too few replicas acknowledged a write within the time allowed: the source of the
/// [`Error::Storage`] (kind `StoreUnavailable`) a store with
/// [`RedisConfig::wait_for_replicas`](crate::RedisConfig::wait_for_replicas) returns then.
/// Find it with `error.source().and_then(|s| s.downcast_ref::<NotReplicated>())`.
///
/// The write itself was applied on the primary; what that leaves is documented per step on
/// [`wait_for_replicas`](crate::RedisConfig::wait_for_replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotReplicated {
    /// The store step whose write was not replicated in time: `claim`, `complete`, `fail` or
    /// `renew`.
    pub operation: &'static str,
    /// How many replicas acknowledged it (Redis's `WAIT` reply).
    pub acknowledged: u32,
    /// How many were required.
    pub required: u32,
    /// How long the primary waited for them.
    pub timeout: Duration,
}

impl fmt::Display for NotReplicated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} replicas acknowledged the {} within {} ms (WAIT)",
            self.acknowledged,
            self.required,
            self.operation,
            self.timeout.as_millis()
        )
    }
}

impl std::error::Error for NotReplicated {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_acknowledgements_fail_with_a_typed_source() {
        let r = Replication {
            replicas: 2,
            timeout: Duration::from_millis(50),
        };
        let target = Target {
            name: "redis 127.0.0.1:1".into(),
            db: 0,
        };
        assert!(r.check(&target, "claim", 2).is_ok());
        assert!(r.check(&target, "claim", 3).is_ok());
        let e = r.check(&target, "complete", 1).unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::StoreUnavailable);
        assert_eq!(
            e.to_string(),
            "idempotency store unavailable during complete: redis 127.0.0.1:1: 1 of 2 replicas \
             acknowledged the complete within 50 ms (WAIT)"
        );
        let source = std::error::Error::source(&e).unwrap();
        let typed = source.downcast_ref::<NotReplicated>().unwrap();
        assert_eq!((typed.acknowledged, typed.required), (1, 2));
        assert_eq!(r.wait_cmd().args_iter().count(), 3);
    }
}
