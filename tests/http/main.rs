//! The `Idempotency-Key` layer (issue 14) served on a real loopback socket, driven by a real
//! HTTP client (hyper-util's) and by `curl`, on the memory, file and Redis stores.
//!
//! Redis comes from the harness of tests/redis: `IDEMPOTENCY_REDIS_URL`, else a `redis-server`
//! started on a free port; without either the Redis tests skip loudly, and fail under
//! `IDEMPOTENCY_REQUIRE_REDIS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../redis/harness.rs"]
#[allow(dead_code)]
mod harness;
/// The example service, so that the restart test runs it (in a child process) as built now.
#[path = "../../examples/http_payments.rs"]
#[allow(dead_code)]
mod payments;
mod restart;
mod scenarios;
mod server;

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::scenarios::$name(crate::server::Store::Memory).await
                }
            )*
        }
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::scenarios::$name(crate::server::Store::File).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::scenarios::$name(crate::server::Store::Redis).await
                }
            )*
        }
    };
}

on_every_store!(
    fifty_concurrent_identical_posts_run_once,
    fifty_concurrent_posts_under_wait_policy_get_one_replay,
    replay_is_exact_and_marked,
    two_tenants_same_key_two_executions,
    custom_fingerprint_ignores_a_timestamp_field,
    mismatch_is_422_while_pending_and_after_completion,
    malformed_keys_are_400_problems,
    missing_required_key_is_400,
    body_over_limit_is_413,
    server_error_is_not_stored_and_releases_the_key,
    response_over_store_limit_is_not_replayed_nor_stuck,
    plain_hyper_service_is_protected,
    per_route_layer_covers_only_its_route,
    curl_sees_replay_409_422_and_400,
);
