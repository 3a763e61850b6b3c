//! `FileStorage`: the embedded file store. One directory, any number of threads and processes
//! on one machine. The layout, locking, durability and permissions are documented on
//! [`FileStorage`].

mod fsio;
mod layout;
mod listing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::fsio::{io_error, RawRecord, ShardLock};
use self::layout::RecordPaths;
use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Clock, Owner, Record, RecordError, RecordStatus, SystemClock, Timestamp};
use crate::storage::{
    apply_finish, decide_claim, Claim, ClaimDecision, ClaimRequest, Finish, Observed, Page,
    Storage, StorageAdmin,
};

/// How hard the file store works to make a write survive an OS crash or power loss.
///
/// Writes are atomic against process crashes either way (temporary file, then rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The default: fsync each new record file before renaming it into place, and the
    /// directory after the rename or a removal. A returned write survives an OS crash.
    #[default]
    Fsync,
    /// Leave flushing to the OS (no fsync). Faster; an OS crash or power loss may lose the
    /// latest writes, so a call may run again, and may leave an empty record file
    /// ([`Error::CorruptRecord`]).
    Buffered,
}

/// The embedded file store: one record file per idempotency key in a directory, safe across
/// threads and processes on one machine.
///
/// Clones share the same directory and settings. Time comes from the store's [`Clock`] (the
/// system clock unless the [builder](Self::builder) injects another); for leases to agree
/// across processes, every process needs the same clock (the system clock in production).
///
/// ```no_run
/// # use idempotency_core as idempotency;
/// use idempotency::{Durability, FileStorage, IdempotencyManager};
///
/// let store = FileStorage::builder("/var/lib/app/idempotency")
///     .durability(Durability::Fsync)
///     .open()?;
/// let manager = IdempotencyManager::new(store);
/// # Ok::<(), idempotency_core::Error>(())
/// ```
///
/// # Layout
///
/// ```text
/// <dir>/                       the store directory (created with mode 0700)
///   3f/                        a shard: the first two hex chars of the record's file name (0700)
///     .lock                    the shard's lock file (0600, empty, never removed)
///     3f9a…e1                  a record: 64 hex chars = SHA-256 of the key string (0600)
///     .3f9a…e1.<32 hex>.tmp    a temporary file while a record is being replaced
/// ```
///
/// A record's file name is the lowercase hex SHA-256 of its idempotency key string as stored
/// (with a [`Prefixed`](crate::Prefixed) store's `prefix/` in front):
/// `printf %s 'billing::charge:0f1e…' | sha256sum` finds it. The raw key
/// never reaches the file system, so no key (`../../x`, a leading `/`, `\0`, `CON`, glob
/// characters, a newline, 10 KB) can name a path outside the directory, and keys that differ in
/// case or Unicode normalization (NFC/NFD) never alias: keys are not normalized. A record file
/// holds one [`Record`] in its binary encoding ([`Record::encode`]).
///
/// # Atomicity
///
/// Every read-decide-write (claim, complete, fail, release, renew, delete, purge) runs under an
/// exclusive OS file lock on the shard's `.lock` file (`flock(2)` on Unix, `LockFileEx` on
/// Windows), so it is atomic across threads and processes, with the same claim and finish rules
/// as the memory store ([`decide_claim`], [`apply_finish`]). The OS drops the lock of a killed
/// process. A process that is *stopped* (SIGSTOP, a debugger) inside one of these steps holds its
/// shard until it resumes; the steps themselves are short (no user code runs under the lock).
///
/// A record is replaced by writing a temporary file in the same directory, then `rename(2)` onto
/// the record file, so a reader or a crash sees the old record or the new one, never a torn one
/// (SEMANTICS.md scenario 27). Reads (`get`) take no lock. Use a local file system: `flock`
/// and `rename` are not reliable across machines on network file systems; for several
/// machines, use the Redis store.
///
/// # Durability
///
/// [`Durability::Fsync`] (the default) fsyncs the temporary file before the rename and the
/// shard directory after it (and after a removal): once a call returns, its record survives an
/// OS crash or a power loss. [`Durability::Buffered`] skips the fsyncs: writes stay atomic
/// against process crashes, but an OS crash may lose the latest records (a lost claim or result
/// lets a call run again) and, on some file systems, leave an empty record file, which then
/// reads as [`Error::CorruptRecord`].
///
/// # Permissions and foreign files
///
/// On Unix the store creates directories with mode 0700 and files with mode 0600 (less any
/// umask bits); an existing store directory keeps its mode. Files are opened with `O_NOFOLLOW`
/// and checked with `symlink_metadata`: a symbolic link (or any non-regular file) planted at a
/// record path is never read or written through; the claim fails with
/// [`Error::CorruptRecord`] naming the path, and [`delete`](Storage::delete) removes the link
/// itself. A symbolic link planted in place of a shard directory fails with [`Error::Io`].
///
/// A record file that is empty, truncated, not a record, or holds another key's record reads as
/// [`Error::CorruptRecord`]; one written by another format version as
/// [`Error::IncompatibleRecord`]. Both name the file's path, fail closed (nothing runs, the file
/// is left in place) and are removed only by an explicit [`delete`](Storage::delete) or by
/// [`remove_unreadable`](StorageAdmin::remove_unreadable) (the CLI's `doctor --fix`), given the path
/// [`list`](StorageAdmin::list) reported.
/// [`purge_expired`](StorageAdmin::purge_expired) removes only records that are expired when it holds
/// their shard's lock, and temporary files left by a crashed writer; it leaves corrupt records,
/// foreign files and the shard directories.
///
/// # Location
///
/// The facade's default manager uses `.idempotency` under the working directory; set
/// `IDEMPOTENCY_URL=file:///var/lib/app/idempotency` to choose another directory. The path is
/// made absolute when the store is opened.
///
/// # Async
///
/// The store does its blocking file I/O directly inside its futures (no `tokio::fs`, no
/// runtime needed), so the manager's sync API can drive them with [`block_on`](crate::block_on).
/// Each step is a few system calls plus, under [`Durability::Fsync`], two fsyncs; the shard lock
/// wait is the only other blocking.
///
/// I/O failures (a missing or read-only directory, a full disk) are [`Error::Io`] naming the
/// path, of kind [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable). A store
/// directory removed after opening is not re-created (writes fail); on a read-only store,
/// existing records still replay and new claims fail.
#[derive(Debug, Clone)]
pub struct FileStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    durability: Durability,
}

/// Configures and opens a [`FileStorage`]; made by [`FileStorage::builder`].
#[derive(Debug)]
pub struct FileStorageBuilder {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    durability: Durability,
}

impl FileStorageBuilder {
    /// The store's clock, which decides leases and expiry (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The durability of writes (default: [`Durability::Fsync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Creates the directory if needed (mode 0700 on Unix, parents included) and opens the
    /// store in it. The path is made absolute against the working directory.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path when the directory cannot be created or is not a
    /// directory.
    pub fn open(self) -> Result<FileStorage> {
        let root = std::path::absolute(&self.dir)
            .map_err(|e| io_error("resolve store directory", &self.dir, e))?;
        fsio::create_dir_all(&root).map_err(|e| io_error("create store directory", &root, e))?;
        let meta =
            std::fs::metadata(&root).map_err(|e| io_error("open store directory", &root, e))?;
        if !meta.is_dir() {
            return Err(io_error(
                "open store directory",
                &root,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
            ));
        }
        Ok(FileStorage {
            inner: Arc::new(Inner {
                root,
                clock: self.clock,
                durability: self.durability,
            }),
        })
    }
}

impl FileStorage {
    /// Opens (creating it if needed, mode 0700) the store in `dir`, on the system clock with
    /// [`Durability::Fsync`].
    ///
    /// # Errors
    /// [`Error::Io`] naming the path when the directory cannot be created or is not a
    /// directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStorage> {
        Self::builder(dir).open()
    }

    /// A builder for a store in `dir`, to set the clock and the durability.
    pub fn builder(dir: impl AsRef<Path>) -> FileStorageBuilder {
        FileStorageBuilder {
            dir: dir.as_ref().to_path_buf(),
            clock: Arc::new(SystemClock),
            durability: Durability::default(),
        }
    }

    /// The store directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// The durability setting.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// The path of the record file of `key` (`<dir>/<2 hex>/<64 hex>`, see the
    /// [layout](FileStorage#layout)), whether or not it exists. For tests and operators.
    #[doc(hidden)]
    pub fn record_path(&self, key: &IdempotencyKey) -> PathBuf {
        RecordPaths::new(&self.inner.root, key).record
    }

    fn paths(&self, key: &IdempotencyKey) -> RecordPaths {
        RecordPaths::new(&self.inner.root, key)
    }

    /// Takes the lock of the key's shard, creating the shard directory if `create`; `None`
    /// when the shard does not exist and `create` is off (so there is no record either).
    fn lock_shard(&self, paths: &RecordPaths, create: bool) -> Result<Option<ShardLock>> {
        if !fsio::ensure_shard(&paths.shard, create, self.inner.durability)? {
            return Ok(None);
        }
        ShardLock::acquire(&paths.shard.join(layout::LOCK_FILE)).map(Some)
    }

    /// Reads and decodes the record of `key`; a file that does not decode, or holds another
    /// key's record, is an error naming the path.
    fn read(&self, key: &IdempotencyKey, paths: &RecordPaths) -> Result<Option<Record>> {
        let location = || format!("{key} (file {})", paths.record.display());
        let bytes = match fsio::read_record(&paths.record)? {
            RawRecord::Absent => return Ok(None),
            RawRecord::Bytes(b) => b,
            RawRecord::NotAFile => {
                return Err(Error::CorruptRecord {
                    key: location(),
                    reason: "a symbolic link or another non-regular file is at the record path; \
                             refused, never followed (remove it with `delete`)"
                        .to_owned(),
                })
            }
        };
        let record = Record::decode_at(&bytes, location)?;
        if record.key != *key {
            return Err(Error::CorruptRecord {
                key: location(),
                reason: format!(
                    "the file holds the record of another key (`{}`)",
                    record.key
                ),
            });
        }
        Ok(Some(record))
    }

    fn write(&self, paths: &RecordPaths, record: &Record) -> Result<()> {
        let bytes = record.encode()?;
        fsio::write_atomic(
            &paths.shard,
            &paths.temp(),
            &paths.record,
            &bytes,
            self.inner.durability,
        )
    }

    fn finish(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        finish: Finish<'_>,
        ttl: Duration,
    ) -> Result<Record> {
        let paths = self.paths(key);
        let Some(_lock) = self.lock_shard(&paths, false)? else {
            return Err(Error::LeaseLost { key: key.clone() });
        };
        let now = self.inner.clock.now();
        let current = self.read(key, &paths)?;
        // Only a `Pending` record is rewritten; a finished one that `apply_finish` accepts is
        // this owner's finish already applied (a retry), answered as stored.
        let pending = current
            .as_ref()
            .is_some_and(|r| r.status == RecordStatus::Pending);
        match apply_finish(current, owner, finish, ttl, now) {
            Some(rec) => {
                if pending {
                    self.write(&paths, &rec)?;
                }
                Ok(rec)
            }
            None => Err(Error::LeaseLost { key: key.clone() }),
        }
    }

    /// Purges one shard under its lock: expired records and stale temporary files.
    fn purge_shard(&self, shard: &Path) -> Result<u64> {
        let _lock = ShardLock::acquire(&shard.join(layout::LOCK_FILE))?;
        let now = self.inner.clock.now();
        let mut removed = 0;
        let mut changed = false;
        for (name, path) in fsio::list_dir(shard)? {
            if layout::is_temp_name(&name) {
                // Every write holds this lock from temporary file to rename, so a temporary
                // file seen under the lock belongs to a writer that died.
                changed |= remove_quietly(&path)?;
            } else if layout::is_record_name(&name) {
                let expired = match fsio::read_record(&path)? {
                    RawRecord::Bytes(b) => Record::decode(&b, &path.display().to_string())
                        .is_ok_and(|r| r.is_expired_at(now)),
                    RawRecord::Absent | RawRecord::NotAFile => false,
                };
                if expired && remove_quietly(&path)? {
                    removed += 1;
                    changed = true;
                }
            }
        }
        if changed {
            fsio::sync_dir(shard, self.inner.durability)?;
        }
        Ok(removed)
    }
}

fn remove_quietly(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove file", path, e)),
    }
}

impl Storage for FileStorage {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        let paths = self.paths(key);
        // Replay fast path, without the shard lock: a live *finished* record can only be
        // replaced by a refresh or removed by an explicit delete, and every write is an atomic
        // rename, so answering from it is the same as answering under the lock a moment
        // earlier. Anything else (absent, Pending, expired, a refresh) takes the locked path.
        if !req.refresh {
            if let Ok(Some(rec)) = self.read(key, &paths) {
                let now = self.inner.clock.now();
                if rec.status != RecordStatus::Pending && !rec.is_expired_at(now) {
                    return Ok(Claim::Existing(Observed { record: rec, now }));
                }
            }
        }
        let _lock = self.lock_shard(&paths, true)?;
        let now = self.inner.clock.now();
        match decide_claim(key, self.read(key, &paths)?, req, now) {
            ClaimDecision::Write(rec, claim) => {
                self.write(&paths, &rec)?;
                Ok(claim)
            }
            ClaimDecision::Keep(claim) => Ok(claim),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Success(result), ttl)
    }

    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.finish(key, owner, Finish::Failed(error), ttl)
    }

    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        let paths = self.paths(key);
        let Some(_lock) = self.lock_shard(&paths, false)? else {
            return Ok(false);
        };
        let mine = self
            .read(key, &paths)?
            .is_some_and(|r| r.owner == *owner && r.status == RecordStatus::Pending);
        if !mine {
            return Ok(false);
        }
        fsio::remove_entry(&paths.shard, &paths.record, self.inner.durability)
    }

    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        let paths = self.paths(key);
        let Some(_lock) = self.lock_shard(&paths, false)? else {
            return Err(Error::LeaseLost { key: key.clone() });
        };
        let now = self.inner.clock.now();
        match self.read(key, &paths)? {
            Some(mut rec) if rec.owner == *owner && rec.status == RecordStatus::Pending => {
                let until = now.saturating_add(lease);
                rec.expires_at = until;
                rec.lease_until = Some(until);
                self.write(&paths, &rec)?;
                Ok(until)
            }
            _ => Err(Error::LeaseLost { key: key.clone() }),
        }
    }

    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let paths = self.paths(key);
        if !fsio::ensure_shard(&paths.shard, false, self.inner.durability)? {
            return Ok(None);
        }
        let record = self.read(key, &paths)?;
        let now = self.inner.clock.now();
        Ok(record.map(|record| Observed { record, now }))
    }

    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        let paths = self.paths(key);
        let Some(_lock) = self.lock_shard(&paths, false)? else {
            return Ok(false);
        };
        fsio::remove_entry(&paths.shard, &paths.record, self.inner.durability)
    }
}

impl StorageAdmin for FileStorage {
    /// Lists record files in name order (shard by shard); the cursor is the file name of the
    /// last entry of the previous page. Readable records come with the store's time; corrupt
    /// files, foreign format versions, non-regular files and files holding another key's record
    /// are [`Listed::Unreadable`](crate::Listed::Unreadable) with their path as the location.
    /// Temporary and lock files are skipped. Takes no lock.
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        self.list_page(cursor, limit)
    }

    /// Removes the record file at `location` (a path as listed) only if it is a record file of
    /// this store (`<dir>/<shard>/<64 hex>`; never a temporary or lock file, never outside the
    /// directory) and is still unreadable when re-read under its shard's lock. A readable
    /// record is left alone (`Ok(false)`).
    async fn remove_unreadable(&self, location: &str) -> Result<bool> {
        self.remove_unreadable_at(location)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let mut removed = 0;
        for (name, shard) in fsio::list_dir(&self.inner.root)? {
            if !layout::is_shard_name(&name) {
                continue;
            }
            // Skip anything that is not a real directory (a planted symbolic link).
            match std::fs::symlink_metadata(&shard) {
                Ok(m) if m.is_dir() => removed += self.purge_shard(&shard)?,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("inspect shard directory", &shard, e)),
            }
        }
        Ok(removed)
    }
}
