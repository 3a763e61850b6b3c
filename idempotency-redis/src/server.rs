//! The connections to a single server, chosen per call so that no command hops to another
//! thread: a sync caller ([`idempotency_core::in_block_on`]) gets a sync connection from a
//! small pool, used on its own thread; an async caller on a tokio runtime gets that runtime's
//! own multiplexed connection (a [`ConnectionManager`], created on first use and driven by the
//! runtime itself); an async caller with no tokio runtime (another executor), or on a runtime
//! built without I/O or timers, gets one driven by the store's background thread, started on
//! first such use.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use idempotency_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, OnceCell};

use crate::conn::{attempt_sync, send, Failure, Replies, Request};
use crate::worker::Worker;

/// The most idle sync connections kept for reuse; more are closed when returned.
const MAX_IDLE: usize = 32;

/// Time-outs and reconnection settings of the connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) response_timeout: Duration,
    pub(crate) connection_timeout: Duration,
    pub(crate) reconnect_retries: usize,
}

impl Settings {
    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1))
    }
}

/// One runtime's connection. The entry counts only while `alive` upgrades: a task spawned on
/// the runtime holds it, so it dies with the runtime (whose id tokio may then reuse) or when
/// this entry is dropped (`_stop` closes, ending the task).
struct PerRuntime {
    id: tokio::runtime::Id,
    alive: Weak<()>,
    /// `None` for a runtime without the I/O or time driver a connection needs: its callers
    /// are served like those of another executor.
    conn: Option<Arc<OnceCell<ConnectionManager>>>,
    _stop: oneshot::Sender<()>,
}

/// The background thread and its connection, for callers without a runtime.
struct Fallback {
    worker: Worker,
    conn: OnceCell<ConnectionManager>,
}

/// The connections to one server.
pub(crate) struct Server {
    client: redis::Client,
    /// `client` without the `CLIENT SETINFO` handshake, for sync connections: connecting then
    /// costs no round trip before the first request (and no wait on an unresponsive server).
    sync_client: redis::Client,
    settings: Settings,
    idle: Mutex<Vec<redis::Connection>>,
    runtimes: RwLock<Vec<PerRuntime>>,
    fallback: Mutex<Option<Arc<Fallback>>>,
}

impl Server {
    /// The connections to the server `client` names; makes one sync connection now and pings
    /// the server on it, so that an unreachable or silent server or refused credentials fail
    /// here.
    ///
    /// # Errors
    /// Redis's error when the first connection cannot be made.
    pub(crate) fn open(client: redis::Client, settings: Settings) -> RedisResult<Server> {
        let info = client.get_connection_info().clone();
        let quiet = info.redis_settings().clone().set_skip_set_lib_name();
        let sync_client = redis::Client::open(info.set_redis_settings(quiet))?;
        let server = Server {
            client,
            sync_client,
            settings,
            idle: Mutex::new(Vec::new()),
            runtimes: RwLock::new(Vec::new()),
            fallback: Mutex::new(None),
        };
        let mut first = server.connect_sync()?;
        // A sync connection to database 0 without credentials makes no handshake: ask.
        redis::cmd("PING").exec(&mut first)?;
        server.checkin(first);
        Ok(server)
    }

    /// Sends `req` on the connection for this caller (see the module documentation).
    pub(crate) async fn exec(&self, req: &Request) -> Result<Replies, Failure> {
        if idempotency_core::in_block_on() {
            return self.exec_sync(req).map_err(Failure::Redis);
        }
        // Boxed, so that the future of every call, a sync caller's too, does not carry the
        // async I/O's state (about 500 bytes): a sync first run's futures then stay small.
        Box::pin(self.exec_async(req)).await
    }

    /// [`exec`](Self::exec) for an async caller.
    async fn exec_async(&self, req: &Request) -> Result<Replies, Failure> {
        let own = match Handle::try_current() {
            Ok(handle) => self.runtime_cell(&handle),
            Err(_) => None,
        };
        match own {
            Some(cell) => {
                let mut conn = cell.get_or_try_init(|| self.new_manager()).await?.clone();
                send(&mut conn, req).await
            }
            None => {
                let fallback = self.fallback()?;
                fallback
                    .worker
                    .run(async {
                        let mut conn = fallback
                            .conn
                            .get_or_try_init(|| self.new_manager())
                            .await?
                            .clone();
                        send(&mut conn, req).await
                    })
                    .await
            }
        }
    }

    /// A sync caller's request, on this thread, retried once as its policy allows (on a new
    /// connection: one that failed is never reused).
    fn exec_sync(&self, req: &Request) -> RedisResult<Replies> {
        match self.attempt_sync(req) {
            Ok(values) => Ok(Replies {
                values,
                retried_after_loss: false,
            }),
            Err(e) => match req.retry.after(&e) {
                Some(maybe_applied) => Ok(Replies {
                    values: self.attempt_sync(req)?,
                    retried_after_loss: maybe_applied,
                }),
                None => Err(e),
            },
        }
    }

    fn attempt_sync(&self, req: &Request) -> RedisResult<Vec<Value>> {
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            None => self.connect_sync()?,
        };
        match attempt_sync(&mut conn, req) {
            Ok(values) => {
                self.checkin(conn);
                Ok(values)
            }
            Err(e) => {
                // The connection may hold a late reply or be closed: drop it, and the idle
                // ones with it when the server went away (they failed the same way).
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.lock_idle().clear();
                }
                Err(e)
            }
        }
    }

    fn connect_sync(&self) -> RedisResult<redis::Connection> {
        let conn = self
            .sync_client
            .get_connection_with_timeout(self.settings.connection_timeout)?;
        conn.set_read_timeout(Some(self.settings.response_timeout))?;
        conn.set_write_timeout(Some(self.settings.response_timeout))?;
        Ok(conn)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<redis::Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkout(&self) -> Option<redis::Connection> {
        self.lock_idle().pop()
    }

    fn checkin(&self, conn: redis::Connection) {
        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE && redis::ConnectionLike::is_open(&conn) {
            idle.push(conn);
        }
    }

    async fn new_manager(&self) -> RedisResult<ConnectionManager> {
        ConnectionManager::new_with_config(self.client.clone(), self.settings.manager_config())
            .await
    }

    /// The connection cell of the runtime `handle` belongs to (its connection is created on
    /// first use, on that runtime, which then drives it); `None` when that runtime cannot
    /// drive one.
    fn runtime_cell(&self, handle: &Handle) -> Option<Arc<OnceCell<ConnectionManager>>> {
        let id = handle.id();
        let found = self
            .runtimes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| r.id == id && r.alive.strong_count() > 0)
            .map(|r| r.conn.clone());
        match found {
            Some(cell) => cell,
            None => self.register(handle),
        }
    }

    /// Adds the entry of `handle`'s runtime (dropping those of runtimes that ended).
    fn register(&self, handle: &Handle) -> Option<Arc<OnceCell<ConnectionManager>>> {
        let id = handle.id();
        let mut runtimes = self.runtimes.write().unwrap_or_else(|p| p.into_inner());
        runtimes.retain(|r| r.alive.strong_count() > 0);
        if let Some(r) = runtimes.iter().find(|r| r.id == id) {
            return r.conn.clone();
        }
        let alive = Arc::new(());
        let (stop, stopped) = oneshot::channel::<()>();
        let entry = PerRuntime {
            id,
            alive: Arc::downgrade(&alive),
            conn: drives_io_and_time(handle).then(|| Arc::new(OnceCell::new())),
            _stop: stop,
        };
        // Ends when the runtime shuts down (its tasks are dropped) or the entry is dropped.
        handle.spawn(async move {
            let _alive = alive;
            let _ = stopped.await;
        });
        let cell = entry.conn.clone();
        runtimes.push(entry);
        cell
    }

    fn fallback(&self) -> Result<Arc<Fallback>, Failure> {
        let mut slot = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &*slot {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(Fallback {
            worker: Worker::start().map_err(Failure::Store)?,
            conn: OnceCell::new(),
        });
        *slot = Some(Arc::clone(&f));
        Ok(f)
    }
}

/// Whether `handle`'s runtime has the I/O and time drivers a connection needs (`enable_io` and
/// `enable_time`, both in `enable_all`). Tokio offers no way to ask: using a missing driver
/// panics, so this tries both once, catching the panic (whose message the panic hook still
/// prints, once per such runtime). Built with `panic = "abort"` nothing can be caught, so
/// every runtime is taken to have both (as tokio's own I/O on one without aborts).
#[cfg(panic = "abort")]
fn drives_io_and_time(_: &Handle) -> bool {
    true
}

/// See the `panic = "abort"` version.
#[cfg(not(panic = "abort"))]
fn drives_io_and_time(handle: &Handle) -> bool {
    let _entered = handle.enter();
    let socket = match std::net::UdpSocket::bind("127.0.0.1:0") {
        Ok(socket) => socket,
        // No socket to try I/O with: assume the usual `enable_all`.
        Err(_) => return true,
    };
    if socket.set_nonblocking(true).is_err() {
        return true;
    }
    std::panic::catch_unwind(move || {
        drop(tokio::time::sleep(Duration::ZERO));
        drop(tokio::net::UdpSocket::from_std(socket));
    })
    .is_ok()
}
