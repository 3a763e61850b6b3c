//! The conformance kit on a local 3-master Redis Cluster (feature `cluster`): three
//! `redis-server --cluster-enabled yes` on free loopback ports, joined with
//! `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, started once per test
//! process (the servers die with the process; see `harness::Server`).

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use idempotency::{DynStorage, IdempotencyKey, RedisStorage};
use idempotency_core::testing::Harness;
use idempotency_redis::{redis, RedisConfig};

use crate::harness::{
    free_port, has_redis_server, skip, temp_dir, test_name, unique_prefix, Server,
};

struct Cluster {
    _servers: Vec<Server>,
    urls: Vec<String>,
}

fn start_cluster() -> Option<Cluster> {
    let dir = temp_dir("cluster");
    let mut servers = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let conf = dir.join(format!("nodes-{i}.conf"));
        let conf = conf.to_string_lossy().into_owned();
        let d = dir.to_string_lossy().into_owned();
        servers.push(Server::start_with(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--dir",
                &d,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        ));
    }
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            skip("cluster", &format!("redis-cli is not runnable: {e}"));
            return None;
        }
    }
    // Wait until every node reports the cluster as ok (the slots are agreed).
    for a in &addrs {
        let client = redis::Client::open(format!("redis://{a}/")).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut ok = false;
        for _ in 0..200 {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
            if info.contains("cluster_state:ok") {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ok, "node {a} never reported cluster_state:ok");
    }
    let urls = addrs.iter().map(|a| format!("redis://{a}/")).collect();
    Some(Cluster {
        _servers: servers,
        urls,
    })
}

fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            if !has_redis_server() {
                skip("cluster", "redis-server is not on PATH");
                return None;
            }
            start_cluster()
        })
        .as_ref()
}

struct ClusterHarness {
    urls: Vec<String>,
    store: RedisStorage,
}

impl ClusterHarness {
    fn new() -> Option<ClusterHarness> {
        let c = cluster()?;
        let store = RedisConfig::cluster(c.urls.clone())
            .prefix(unique_prefix(&test_name()))
            .open()
            .expect("open the cluster store");
        Some(ClusterHarness {
            urls: c.urls.clone(),
            store,
        })
    }
}

impl Harness for ClusterHarness {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.store.clone())
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
        let client = redis::cluster::ClusterClient::new(self.urls.clone()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: String = redis::cmd("SET")
            .arg(self.store.record_key(key))
            .arg(bytes)
            .query(&mut conn)
            .unwrap();
        true
    }
}

idempotency_core::conformance_suite!(match ClusterHarness::new() {
    Some(h) => h,
    None => return,
});
