//! The file-system steps of the file store: directories and files with owner-only
//! permissions, reads that never follow a symbolic link, atomic replacement (temporary file,
//! fsync, rename, directory fsync), and the shard lock.
//!
//! Every function maps its `std::io::Error` to [`Error::Io`] naming the path concerned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::Durability;
use crate::error::{Error, Result};

/// Wraps an I/O error as [`Error::Io`] for `operation` on `path`.
pub(super) fn io_error(operation: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and any missing parents, with mode 0700 on Unix for the ones it creates.
pub(super) fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Makes sure the shard directory `shard` exists and is a real directory (not a symbolic link
/// planted in the store), creating it (mode 0700) when `create` is set. Returns whether it
/// exists now.
pub(super) fn ensure_shard(shard: &Path, create: bool, durability: Durability) -> Result<bool> {
    match fs::symlink_metadata(shard) {
        Ok(m) if m.is_dir() => return Ok(true),
        Ok(_) => return Err(foreign_shard(shard)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("inspect shard directory", shard, e)),
    }
    if !create {
        return Ok(false);
    }
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    match b.create(shard) {
        Ok(()) => {
            if let Some(root) = shard.parent() {
                sync_dir(root, durability)?;
            }
            Ok(true)
        }
        // Another thread or process created it first: check what it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            ensure_shard(shard, false, durability)
        }
        Err(e) => Err(io_error("create shard directory", shard, e)),
    }
}

fn foreign_shard(shard: &Path) -> Error {
    io_error(
        "refuse shard path",
        shard,
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a symbolic link or a file where the store expects a shard directory; never followed",
        ),
    )
}

/// An exclusive OS lock (`flock(2)` on Unix, `LockFileEx` on Windows) on a shard's lock file,
/// held until dropped. It excludes other threads (each takes its own open file description)
/// and other processes; the OS releases it when a holder dies, so a killed process never
/// leaves a shard locked.
#[derive(Debug)]
pub(super) struct ShardLock {
    _file: File,
}

impl ShardLock {
    /// Opens (creating, mode 0600) the lock file `path` without following a symbolic link, and
    /// waits for the exclusive lock. On a read-only store an existing lock file is opened for
    /// reading (a lock needs no write access), so replays keep working while writes fail.
    pub(super) fn acquire(path: &Path) -> Result<ShardLock> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        owner_only(&mut opts);
        let file = opts.open(path).or_else(|e| {
            let mut read_only = OpenOptions::new();
            read_only.read(true);
            no_follow(&mut read_only);
            read_only
                .open(path)
                .map_err(|_| io_error("open shard lock", path, e))
        })?;
        fs4::FileExt::lock(&file).map_err(|e| io_error("lock shard", path, e))?;
        Ok(ShardLock { _file: file })
    }
}

/// What sits at a record path.
pub(super) enum RawRecord {
    /// No file.
    Absent,
    /// The file's bytes.
    Bytes(Vec<u8>),
    /// A symbolic link, a directory, a FIFO or another non-regular file: never opened.
    NotAFile,
}

/// Reads the record file at `path` without following a symbolic link.
pub(super) fn read_record(path: &Path) -> Result<RawRecord> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    // No symbolic link is followed, and a FIFO planted at the path cannot block the open: the
    // file's type is checked on the open handle below.
    no_follow_nonblocking(&mut opts);
    let mut file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Ok(RawRecord::Absent),
        Err(e) if is_symlink_refusal(&e) => return Ok(RawRecord::NotAFile),
        Err(e) => return Err(io_error("open record", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error("inspect record", path, e))?;
    if !meta.is_file() {
        return Ok(RawRecord::NotAFile);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Through `Take`, not `File::read_to_end`: the latter asks the file for its size and
    // position again (a `statx` and an `lseek` per read) to size a buffer sized already. The
    // file is still read to its end, whatever its length now.
    (&mut file)
        .take(u64::MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read record", path, e))?;
    Ok(RawRecord::Bytes(bytes))
}

/// Replaces the file at `target` with `bytes` atomically: the bytes go to the fresh temporary
/// file `temp` in the same directory (created exclusively, mode 0600), which is fsynced (per
/// `durability`) and renamed over `target`; then the directory is fsynced. A crash at any
/// point leaves the old file or the new one, never a mix. `rename` replaces a directory entry
/// and never writes through a symbolic link.
pub(super) fn write_atomic(
    dir: &Path,
    temp: &Path,
    target: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    owner_only(&mut opts);
    let mut file = opts
        .open(temp)
        .map_err(|e| io_error("create temporary record file", temp, e))?;
    let written = file.write_all(bytes).and_then(|()| match durability {
        Durability::Fsync => file.sync_all(),
        Durability::Buffered => Ok(()),
    });
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(temp);
        return Err(io_error("write temporary record file", temp, e));
    }
    crate::fault_point!(crate::fault::DURING_WRITE, &target.to_string_lossy());
    if let Err(e) = fs::rename(temp, target) {
        let _ = fs::remove_file(temp);
        return Err(io_error("rename temporary file onto record", target, e));
    }
    sync_dir(dir, durability)
}

/// Removes the directory entry at `path` (a file or a symbolic link itself, never its target),
/// then fsyncs `dir` per `durability`. Returns whether an entry was removed.
pub(super) fn remove_entry(dir: &Path, path: &Path, durability: Durability) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(dir, durability)?;
            Ok(true)
        }
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(io_error("remove record", path, e)),
    }
}

/// Fsyncs the directory `dir` so that a rename or removal in it is durable (Unix only; a no-op
/// under [`Durability::Buffered`] and on other platforms).
pub(super) fn sync_dir(dir: &Path, durability: Durability) -> Result<()> {
    if durability == Durability::Buffered || !cfg!(unix) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, e))
}

/// The names of the entries of `dir` that are valid UTF-8, with their paths.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("list directory", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list directory", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

#[cfg(unix)]
fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(not(unix))]
fn is_symlink_refusal(_: &io::Error) -> bool {
    false
}

/// Files are created with mode 0600 and never opened through a symbolic link (Unix).
fn owner_only(opts: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(opts, 0o600);
    no_follow(opts);
}

fn no_follow_nonblocking(opts: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(opts, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    #[cfg(not(unix))]
    let _ = opts;
}

fn no_follow(opts: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(opts, libc::O_NOFOLLOW);
    #[cfg(not(unix))]
    let _ = opts;
}
