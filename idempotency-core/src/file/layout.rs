//! Where things live in a store directory: shard directories, record files, temporary files and
//! the shard lock files. Pure path arithmetic; no I/O.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::key::IdempotencyKey;

/// The name of the lock file in each shard directory.
pub(super) const LOCK_FILE: &str = ".lock";
/// Temporary files are `.<64 hex>.<32 hex>.tmp`.
const TEMP_SUFFIX: &str = ".tmp";

/// The lowercase hex SHA-256 of the key string: the record's file name. The raw key never
/// reaches the file system, so `../`, `/`, `\0`, `CON`, glob characters or a 10 KB key all map
/// to 64 characters of `[0-9a-f]`, and different strings (`Key`/`key`, NFC/NFD) never alias.
pub(super) fn digest_hex(key: &IdempotencyKey) -> String {
    crate::hex::encode(Sha256::digest(key.as_str().as_bytes()))
}

/// The paths of one key's record.
#[derive(Debug, Clone)]
pub(super) struct RecordPaths {
    /// `<root>/<first two hex chars>`.
    pub(super) shard: PathBuf,
    /// `<shard>/<64 hex chars>`.
    pub(super) record: PathBuf,
    /// The 64 hex chars.
    pub(super) digest: String,
}

impl RecordPaths {
    pub(super) fn new(root: &Path, key: &IdempotencyKey) -> RecordPaths {
        let digest = digest_hex(key);
        let shard = root.join(&digest[..2]);
        // Sized once (`join` would grow the shard's copy).
        let mut record = PathBuf::with_capacity(shard.as_os_str().len() + 1 + digest.len());
        record.push(&shard);
        record.push(&digest);
        RecordPaths {
            shard,
            record,
            digest,
        }
    }

    /// A fresh temporary file name in the record's shard, unique per write.
    pub(super) fn temp(&self) -> PathBuf {
        self.shard.join(format!(
            ".{}.{}{TEMP_SUFFIX}",
            self.digest,
            Uuid::new_v4().simple()
        ))
    }
}

/// Whether `name` is a shard directory name (two lowercase hex chars).
pub(super) fn is_shard_name(name: &str) -> bool {
    name.len() == 2 && crate::hex::is_lower(name)
}

/// Whether `name` is a record file name (64 lowercase hex chars).
pub(super) fn is_record_name(name: &str) -> bool {
    name.len() == 64 && crate::hex::is_lower(name)
}

/// Whether `name` is a temporary file name written by this store.
pub(super) fn is_temp_name(name: &str) -> bool {
    name.len() == 1 + 64 + 1 + 32 + TEMP_SUFFIX.len()
        && name.starts_with('.')
        && name.ends_with(TEMP_SUFFIX)
        // `get`, not indexing: a foreign name with multi-byte characters has no boundary there.
        && name.get(1..65).is_some_and(is_record_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_key(s: &str) -> IdempotencyKey {
        // IdempotencyKey is a newtype over String; postcard encodes both alike.
        let bytes = postcard::to_stdvec(&s.to_owned()).unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn record_paths_are_fixed_length_hex_under_the_root() {
        let root = Path::new("/store");
        for s in [
            "../../../outside",
            "/abs",
            "a/../../b",
            "\0",
            "CON",
            "*?[",
            "\n",
            "",
        ] {
            let p = RecordPaths::new(root, &raw_key(s));
            assert!(is_record_name(&p.digest), "{s:?}");
            assert_eq!(p.record, root.join(&p.digest[..2]).join(&p.digest));
            assert!(is_temp_name(
                p.temp().file_name().unwrap().to_str().unwrap()
            ));
        }
    }

    #[test]
    fn foreign_names_with_multibyte_characters_are_not_temporary_files() {
        let name = format!(".{}.{}{TEMP_SUFFIX}", "é".repeat(32), "0".repeat(32));
        assert_eq!(name.len(), 1 + 64 + 1 + 32 + TEMP_SUFFIX.len());
        assert!(!is_temp_name(&name));
        // Byte 65 falls inside a character here: indexing there would panic.
        let name = format!(".a{}{}{TEMP_SUFFIX}", "é".repeat(32), "0".repeat(32));
        assert_eq!(name.len(), 1 + 64 + 1 + 32 + TEMP_SUFFIX.len());
        assert!(!name.is_char_boundary(65));
        assert!(!is_temp_name(&name));
    }

    #[test]
    fn digest_is_sha256_of_the_key_string() {
        // printf %s abc | sha256sum
        let d = digest_hex(&raw_key("abc"));
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
