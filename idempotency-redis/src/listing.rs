//! Listing a Redis store a page at a time (`SCAN` with the store's own key pattern) and
//! removing the unreadable records it finds, for operators (the `idempotency` CLI).

use idempotency_core::{Error, Listed, Observed, Page, Record, Result, Timestamp};
use redis::Value;

use crate::reply;
use crate::scripts::{self, INSPECT_SCRIPT, REMOVE_UNREADABLE_SCRIPT};
use crate::storage::{record_key, run_on, Conn, RedisStorage};

/// What one record key held when inspected: the script's code and value.
struct Held {
    code: i64,
    value: Vec<u8>,
    /// The resolved `created` and `until` of a value in this store's layout.
    times: Option<(u64, u64)>,
}

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
        match self.inner.conn {
            Conn::Single(_) => Ok(()),
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => Err(Error::Config(
                "listing a Redis Cluster is not supported (SCAN walks one node)".into(),
            )),
        }
    }

    /// Runs the inspect script on `keys`: Redis's time and what each key holds.
    async fn inspect(&self, keys: Vec<String>) -> Result<(Timestamp, Vec<Held>)> {
        let mut conn = self.inner.conn.clone();
        let v: Value = run_on(&self.inner.handle, "list", async move {
            let mut inv = INSPECT_SCRIPT.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            inv.arg(scripts::magic().to_vec());
            inv.invoke_async::<Value>(&mut conn).await
        })
        .await?;
        let items = reply::array(&v).map_err(|e| e.into_error("list"))?;
        let now = Timestamp(reply::u64_at(items, 0).map_err(|e| e.into_error("list"))?);
        let mut held = Vec::with_capacity(items.len().saturating_sub(1));
        for item in items.iter().skip(1) {
            let pair = reply::array(item).map_err(|e| e.into_error("list"))?;
            let times = match pair.len() {
                4 => Some((
                    reply::u64_at(pair, 2).map_err(|e| e.into_error("list"))?,
                    reply::u64_at(pair, 3).map_err(|e| e.into_error("list"))?,
                )),
                _ => None,
            };
            held.push(Held {
                code: reply::int_at(pair, 0).map_err(|e| e.into_error("list"))?,
                value: reply::bytes_at(pair, 1)
                    .map_err(|e| e.into_error("list"))?
                    .to_vec(),
                times,
            });
        }
        Ok((now, held))
    }

    fn classify(&self, redis_key: &str, held: &Held) -> Classified {
        let location = format!("redis key `{redis_key}` ({})", self.inner.target);
        let corrupt = |reason: String| {
            Classified::Unreadable(Error::CorruptRecord {
                key: location.clone(),
                reason,
            })
        };
        match held.code {
            0 => Classified::Gone,
            1 => {
                let decoded = match scripts::record_bytes(&held.value, held.times) {
                    Some(bytes) => Record::decode_at(&bytes, || location.clone()),
                    // Not this store's layout: corrupt, or another format version.
                    None => Record::decode_at(&held.value, || location.clone()).and_then(|_| {
                        Err(Error::CorruptRecord {
                            key: location.clone(),
                            reason: "not a record of this store's layout".into(),
                        })
                    }),
                };
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
        let mut conn = self.inner.conn.clone();
        let (next, keys): (u64, Vec<String>) = run_on(&self.inner.handle, "list", async move {
            redis::cmd("SCAN")
                .arg(start)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn)
                .await
        })
        .await?;
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| self.is_own_record_key(k))
            .collect();
        let mut items = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let (now, held) = self.inspect(keys.clone()).await?;
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

    /// [`StorageAdmin::remove_unreadable`](idempotency_core::StorageAdmin::remove_unreadable).
    pub(crate) async fn remove_unreadable_at(&self, location: &str) -> Result<bool> {
        self.refuse_cluster()?;
        if !self.is_own_record_key(location) {
            return Err(Error::Config(format!(
                "`{location}` is not a record key of this store (`{}{{<64 hex>}}`)",
                self.prefix
            )));
        }
        let (_, held) = self.inspect(vec![location.to_owned()]).await?;
        let Some(held) = held.into_iter().next() else {
            return Ok(false);
        };
        if !matches!(self.classify(location, &held), Classified::Unreadable(_)) {
            return Ok(false);
        }
        let mut conn = self.inner.conn.clone();
        let key = location.to_owned();
        let n: i64 = run_on(&self.inner.handle, "remove_unreadable", async move {
            let mut inv = REMOVE_UNREADABLE_SCRIPT.prepare_invoke();
            inv.key(key).arg(held.code.to_string()).arg(held.value);
            inv.invoke_async::<i64>(&mut conn).await
        })
        .await?;
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
