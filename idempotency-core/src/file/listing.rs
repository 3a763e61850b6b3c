//! Listing a file store a page at a time, and removing the unreadable record files it finds
//! (the operator's side: the `idempotency` CLI's `list`, `stats` and `doctor --fix`).
//!
//! Entries are walked in one stable order: record file names (64 lowercase hex characters)
//! ascending. A record's shard is the first two characters of its name, so this is shard by
//! shard, each shard's records in name order. The cursor is the file name of the last entry of
//! the previous page.

use std::path::{Path, PathBuf};

use super::fsio::{self, io_error, RawRecord, ShardLock};
use super::layout;
use super::FileStorage;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::storage::{Listed, Observed, Page};

/// What a record file turned out to hold.
enum Classified {
    /// Nothing any more (removed since the directory was read).
    Gone,
    /// A record of the key whose digest is the file name.
    Readable(Record),
    /// Corrupt bytes, a foreign format version, a non-regular file or another key's record.
    Unreadable(Error),
}

impl FileStorage {
    /// One page of [`StorageAdmin::list`](crate::StorageAdmin::list): at most `limit` (at least 1) record
    /// files with names after `cursor`, in name order.
    pub(super) fn list_page(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        if let Some(c) = cursor {
            if !layout::is_record_name(c) {
                return Err(Error::Config(format!(
                    "`{c}` is not a file store list cursor (64 lowercase hex characters)"
                )));
            }
        }
        let limit = limit.max(1);
        // One name more than the page holds tells whether another page follows.
        let names = self.record_names_after(cursor, limit.saturating_add(1))?;
        let more = names.len() > limit;
        let mut items = Vec::with_capacity(limit.min(names.len()));
        let mut last = None;
        for (name, path) in names.into_iter().take(limit) {
            let now = self.inner.clock.now();
            match classify(&name, &path)? {
                Classified::Gone => {}
                Classified::Readable(record) => {
                    items.push(Listed::Record(Observed { record, now }));
                }
                Classified::Unreadable(error) => items.push(Listed::Unreadable {
                    location: path.display().to_string(),
                    error,
                }),
            }
            last = Some(name);
        }
        Ok(Page {
            items,
            cursor: if more { last } else { None },
        })
    }

    /// Up to `want` record file names (with their paths) after `cursor`, in name order,
    /// skipping temporary files, lock files, foreign names and shards that are not real
    /// directories.
    fn record_names_after(
        &self,
        cursor: Option<&str>,
        want: usize,
    ) -> Result<Vec<(String, PathBuf)>> {
        let mut shards: Vec<(String, PathBuf)> = fsio::list_dir(&self.inner.root)?
            .into_iter()
            .filter(|(name, _)| layout::is_shard_name(name))
            .filter(|(name, _)| cursor.is_none_or(|c| name.as_str() >= &c[..2]))
            .collect();
        shards.sort_unstable();
        let mut out = Vec::new();
        for (_, shard) in shards {
            if !is_real_dir(&shard)? {
                continue;
            }
            let mut names: Vec<(String, PathBuf)> = match fsio::list_dir(&shard) {
                Ok(n) => n,
                // A shard removed between the two listings holds nothing.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue
                }
                Err(e) => return Err(e),
            };
            names.retain(|(name, _)| {
                layout::is_record_name(name) && cursor.is_none_or(|c| name.as_str() > c)
            });
            names.sort_unstable();
            for entry in names {
                out.push(entry);
                if out.len() >= want {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// [`StorageAdmin::remove_unreadable`](crate::StorageAdmin::remove_unreadable): removes the record
    /// file at `location` iff it is a record file of this store and, re-read under its shard's
    /// lock, still unreadable.
    pub(super) fn remove_unreadable_at(&self, location: &str) -> Result<bool> {
        let (name, shard, path) = self.own_record_path(location)?;
        if !is_real_dir(&shard)? {
            return Ok(false);
        }
        let _lock = ShardLock::acquire(&shard.join(layout::LOCK_FILE))?;
        match classify(&name, &path)? {
            Classified::Gone | Classified::Readable(_) => Ok(false),
            Classified::Unreadable(_) => fsio::remove_entry(&shard, &path, self.inner.durability),
        }
    }

    /// Checks that `location` is `<store dir>/<shard>/<record name>` exactly (no `..`, no other
    /// directory, not a temporary or lock file) and returns the name, shard and path.
    fn own_record_path(&self, location: &str) -> Result<(String, PathBuf, PathBuf)> {
        let refuse = |why: &str| {
            Err(Error::Config(format!(
                "`{location}` is not a record file of the store in `{}`: {why}",
                self.inner.root.display()
            )))
        };
        let given = Path::new(location);
        let Some(name) = given.file_name().and_then(|n| n.to_str()) else {
            return refuse("no file name");
        };
        if !layout::is_record_name(name) {
            return refuse("a record file name is 64 lowercase hex characters");
        }
        let shard = self.inner.root.join(&name[..2]);
        let path = shard.join(name);
        // Component-wise equality: `..`, a different root or a different shard never match.
        if given != path {
            return refuse("not at `<store dir>/<first two characters>/<name>`");
        }
        Ok((name.to_owned(), shard, path))
    }
}

/// Whether `path` is a directory itself (not a symbolic link to one); `false` when absent.
fn is_real_dir(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("inspect shard directory", path, e)),
    }
}

/// Reads the record file `path` (named `name`) and says what it holds.
fn classify(name: &str, path: &Path) -> Result<Classified> {
    let location = path.display().to_string();
    let bytes = match fsio::read_record(path)? {
        RawRecord::Absent => return Ok(Classified::Gone),
        RawRecord::Bytes(b) => b,
        RawRecord::NotAFile => {
            return Ok(Classified::Unreadable(Error::CorruptRecord {
                key: location,
                reason: "a symbolic link or another non-regular file is at the record path"
                    .to_owned(),
            }))
        }
    };
    match Record::decode(&bytes, &location) {
        Ok(record) if layout::digest_hex(&record.key) == name => Ok(Classified::Readable(record)),
        Ok(record) => Ok(Classified::Unreadable(Error::CorruptRecord {
            key: location,
            reason: format!(
                "the file holds the record of another key (`{}`)",
                record.key
            ),
        })),
        Err(e) => Ok(Classified::Unreadable(e)),
    }
}
