//! Listing a Redis store a page at a time (`SCAN` with the store's own key pattern) and
//! removing the unreadable records it finds, for operators (the `idempotency` CLI).

use idempotency_core::{Error, Listed, Observed, Page, Record, Result, Timestamp};

use crate::conn::{Request, Retry};
use crate::reply::{self, Held};
use crate::scripts::{INSPECT, REMOVE_UNREADABLE};
use crate::storage::{record_key, RedisStorage};
use crate::value;

/// What a record key turned out to hold.
enum Classified {
    Gone,
    Readable(Record),
    Unreadable(Error),
}

/// `s` with Redis glob metacharacters escaped, for a `SCAN MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStorage {
    /// Whether `key` is a record key of this store: the prefix, then `{` + 64 lowercase hex +
    /// `}`.
    fn is_own_record_key(&self, key: &str) -> bool {
        key.strip_prefix(&*self.prefix)
            .and_then(|rest| rest.strip_prefix('{'))
            .and_then(|rest| rest.strip_suffix('}'))
            .is_some_and(|hex| {
                hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    }

    fn refuse_cluster(&self) -> Result<()> {
        if self.conn.is_cluster() {
            return Err(Error::Config(
                "listing a Redis Cluster is not supported (SCAN walks one node)".into(),
            ));
        }
        Ok(())
    }

    /// Runs the inspect script on `keys`: Redis's time and what each key holds.
    async fn inspect(&self, keys: &[String]) -> Result<(Timestamp, Vec<Held>)> {
        let no_args: [&[u8]; 0] = [];
        let req = Request::new("list", Retry::IfAmbiguous).script(&INSPECT, keys, &no_args);
        let ((now, held), _) = self.run(req, reply::parse_inspect).await?;
        Ok((Timestamp(now), held))
    }

    fn classify(&self, redis_key: &str, held: &Held) -> Classified {
        let location = format!("redis key `{redis_key}` ({})", self.conn.target.name);
        let corrupt = |reason: String| {
            Classified::Unreadable(Error::CorruptRecord {
                key: location.clone(),
                reason,
            })
        };
        match held.code {
            0 => Classified::Gone,
            1 => {
                let decoded = value::decode_any(&held.value, held.times, &|| location.clone());
                match decoded {
                    Ok(r) if record_key(&self.prefix, &r.key) == redis_key => {
                        Classified::Readable(r)
                    }
                    Ok(r) => corrupt(format!(
                        "the value holds the record of another key (`{}`)",
                        r.key
                    )),
                    Err(e) => Classified::Unreadable(e),
                }
            }
            _ => corrupt(format!(
                "a Redis {}, not a record string",
                String::from_utf8_lossy(&held.value)
            )),
        }
    }

    /// One page of [`StorageAdmin::list`](idempotency_core::StorageAdmin::list).
    pub(crate) async fn list_page(&self, cursor: Option<&str>, limit: usize) -> Result<Page> {
        self.refuse_cluster()?;
        let start: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| {
                Error::Config(format!("`{c}` is not a Redis list cursor (a SCAN cursor)"))
            })?,
        };
        // Only this store's key shape; the prefix is escaped, so no input is ever a pattern.
        let pattern = format!("{}{{{}}}", glob_escape(&self.prefix), "?".repeat(64));
        let count = limit.max(1);
        let mut scan = redis::cmd("SCAN");
        scan.arg(start)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let req = Request::new("list", Retry::IfAmbiguous).cmd(scan);
        let ((next, keys), _) = self
            .run(req, |v| {
                redis::from_redis_value::<(u64, Vec<String>)>(v)
                    .map_err(|e| reply::ReplyError(e.to_string()))
            })
            .await?;
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| self.is_own_record_key(k))
            .collect();
        let mut items = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let (now, held) = self.inspect(&keys).await?;
            for (key, held) in keys.into_iter().zip(&held) {
                match self.classify(&key, held) {
                    Classified::Gone => {}
                    Classified::Readable(record) => {
                        items.push(Listed::Record(Observed { record, now }));
                    }
                    Classified::Unreadable(error) => items.push(Listed::Unreadable {
                        location: key,
                        error,
                    }),
                }
            }
        }
        Ok(Page {
            items,
            cursor: (next != 0).then(|| next.to_string()),
        })
    }

    /// [`StorageAdmin::purge_expired`](idempotency_core::StorageAdmin::purge_expired): Redis
    /// expires records natively, so there is nothing to purge.
    pub(crate) async fn purge_expired_records(&self) -> Result<u64> {
        Ok(0)
    }

    /// [`StorageAdmin::remove_unreadable`](idempotency_core::StorageAdmin::remove_unreadable).
    pub(crate) async fn remove_unreadable_at(&self, location: &str) -> Result<bool> {
        self.refuse_cluster()?;
        if !self.is_own_record_key(location) {
            return Err(Error::Config(format!(
                "`{location}` is not a record key of this store (`{}{{<64 hex>}}`)",
                self.prefix
            )));
        }
        let (_, held) = self.inspect(&[location.to_owned()]).await?;
        let Some(held) = held.into_iter().next() else {
            return Ok(false);
        };
        if !matches!(self.classify(location, &held), Classified::Unreadable(_)) {
            return Ok(false);
        }
        let code = held.code.to_string();
        let args: [&[u8]; 2] = [code.as_bytes(), &held.value];
        let req = Request::new("remove_unreadable", Retry::IfUnsent).script(
            &REMOVE_UNREADABLE,
            &[location],
            &args,
        );
        let (n, _) = self.run(req, reply::parse_int).await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_escape_escapes_every_metacharacter() {
        assert_eq!(glob_escape("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(glob_escape("idempotency:"), "idempotency:");
    }
}
