//! What the store keeps about each sink beside its offset: the view `status` shows of every
//! active sink ([`SinkState`]), whether a sink is blocked until an operator acts, and
//! `sink_meta`, small per-sink facts that must survive restarts (a HEC channel, a count of
//! possible duplicates), read and written through typed [`MetaKey`]s.
//!
//! Requests a sink has in flight are kept in `journal`, not here.

use std::marker::PhantomData;

use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::conn::{Db, all, text_ref, to_i64};
use super::error::{Fail, StoreError};
use super::rows;

/// One sink's position in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkState {
    /// The namespace.
    pub ns: String,
    /// The sink name.
    pub sink: String,
    /// Every event with `seq <= offset` is settled for this sink.
    pub offset: i64,
    /// Spooled events after the offset.
    pub pending_events: i64,
    /// Total body bytes of those events.
    pub pending_bytes: i64,
    /// The oldest `fetched_at` among them (`None` when nothing is pending).
    pub oldest_pending_fetched_at: Option<i64>,
    /// Dead letters recorded for this sink in this namespace.
    pub dead_letters: i64,
}

/// A sink that is paused until an operator acts.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockedSink {
    /// The sink.
    pub sink: String,
    /// The cause and the fix, as logged.
    pub reason: String,
}

/// A `sink_meta` key and the type of its value, so that a value is read back as the type it
/// was written as and a key's name is spelt once, where the key is declared.
pub struct MetaKey<'k, T> {
    name: &'k str,
    value: PhantomData<fn() -> T>,
}

impl<'k, T> MetaKey<'k, T> {
    /// The key called `name`.
    pub const fn new(name: &'k str) -> Self {
        MetaKey {
            name,
            value: PhantomData,
        }
    }

    /// Its name, the `key` column.
    pub const fn name(&self) -> &'k str {
        self.name
    }
}

// By hand: derived, they would require `T: Clone` and `T: Debug`.
impl<T> Clone for MetaKey<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MetaKey<'_, T> {}

impl<T> std::fmt::Debug for MetaKey<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MetaKey").field(&self.name).finish()
    }
}

/// A type a `sink_meta` value can have (the column holds text).
pub trait MetaValue: Sized + Send + 'static {
    /// The value as stored.
    fn to_text(&self) -> String;
    /// The value read back; `None` when the text is not of this type.
    fn from_text(text: &str) -> Option<Self>;
}

impl MetaValue for String {
    fn to_text(&self) -> String {
        self.clone()
    }

    fn from_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl MetaValue for i64 {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// Whether a sink is blocked, and why.
const BLOCKED: MetaKey<'static, String> = MetaKey::new("blocked");

impl Store {
    /// The state of every active sink, ordered by namespace and sink. Sinks no longer
    /// registered are left out (their dead letters remain listed by [`Store::dead_letters`]).
    pub async fn sink_states(&self) -> Result<Vec<SinkState>, StoreError> {
        self.run("sink_states", sink_states).await
    }

    /// Marks a sink blocked (`Some(reason)`) or no longer blocked (`None`).
    pub async fn set_blocked(&self, sink: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let reason = reason.map(str::to_owned);
        self.set_meta(sink, BLOCKED, reason.as_ref()).await
    }

    /// Sinks currently marked blocked.
    pub async fn blocked_sinks(&self) -> Result<Vec<BlockedSink>, StoreError> {
        Ok(self
            .meta_of_sinks(BLOCKED)
            .await?
            .into_iter()
            .map(|(sink, reason)| BlockedSink { sink, reason })
            .collect())
    }

    /// The value of `key` for `sink`: `None` when it has none, or one not of the key's type.
    pub async fn meta<T: MetaValue>(
        &self,
        sink: &str,
        key: MetaKey<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        let (sink, key) = (sink.to_owned(), key.name().to_owned());
        self.run("sink_meta", move |db| {
            Ok(meta_get(&db.conn, &sink, &key)?.and_then(|v| T::from_text(&v)))
        })
        .await
    }

    /// Sets (`Some`) or deletes (`None`) the value of `key` for `sink`.
    pub async fn set_meta<T: MetaValue>(
        &self,
        sink: &str,
        key: MetaKey<'_, T>,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        let (sink, key) = (sink.to_owned(), key.name().to_owned());
        let value = value.map(T::to_text);
        self.run("set_meta", move |db| {
            meta_set(&db.conn, &sink, &key, value.as_deref())
        })
        .await
    }

    /// Adds `by` to the counter `key` of `sink` (0 when it has none, or one that is not a
    /// number); returns the new value.
    pub async fn add_meta(
        &self,
        sink: &str,
        key: MetaKey<'_, i64>,
        by: i64,
    ) -> Result<i64, StoreError> {
        let (sink, key) = (sink.to_owned(), key.name().to_owned());
        self.run("sink_meta_add", move |db| meta_add(db, &sink, &key, by))
            .await
    }

    /// Every sink's value of `key`, by sink (values not of the key's type are left out).
    pub async fn meta_of_sinks<T: MetaValue>(
        &self,
        key: MetaKey<'_, T>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let key = key.name().to_owned();
        self.run("sink_meta_by_key", move |db| {
            let rows = all(
                &db.conn,
                "SELECT sink, value FROM sink_meta WHERE key = ?1 ORDER BY sink",
                params![key],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )?;
            Ok(rows
                .into_iter()
                .filter_map(|(sink, v)| T::from_text(&v).map(|v| (sink, v)))
                .collect())
        })
        .await
    }

    /// The value stored under `key` for `sink` in `sink_meta` ([`Store::meta`] with a text
    /// key).
    pub async fn sink_meta(&self, sink: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.meta(sink, MetaKey::<String>::new(key)).await
    }

    /// The value under `key` for `sink`, storing `value` first if there is none (so two
    /// callers agree on one value).
    pub async fn sink_meta_get_or_insert(
        &self,
        sink: &str,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let (sink, key, value) = (sink.to_owned(), key.to_owned(), value.to_owned());
        self.run("sink_meta_get_or_insert", move |db| {
            db.immediate(|tx| {
                tx.execute(
                    "INSERT INTO sink_meta (sink, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (sink, key) DO NOTHING",
                    params![sink, key, value],
                )?;
                Ok(tx.query_row(
                    "SELECT value FROM sink_meta WHERE sink = ?1 AND key = ?2",
                    params![sink, key],
                    |row| row.get(0),
                )?)
            })
        })
        .await
    }

    /// Adds `by` to the counter under `key` for `sink`; returns the new value
    /// ([`Store::add_meta`] with a text key).
    pub async fn sink_meta_add(&self, sink: &str, key: &str, by: i64) -> Result<i64, StoreError> {
        self.add_meta(sink, MetaKey::new(key), by).await
    }

    /// Every sink's value of one `sink_meta` key (e.g. `possible_duplicates`)
    /// ([`Store::meta_of_sinks`] with a text key).
    pub async fn sink_meta_by_key(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.meta_of_sinks(MetaKey::<String>::new(key)).await
    }
}

/// [`Store::sink_states`]: one snapshot, so offsets and backlog agree with each other.
fn sink_states(db: &mut Db) -> Result<Vec<SinkState>, Fail> {
    // One snapshot: offsets and backlog agree with each other. The spool side reads
    // the covering index (ns, seq, events, bytes, fetched_at), and one row per sink.
    let tx = db.conn.unchecked_transaction()?;
    let mut states = tx
        .prepare_cached(
            "SELECT o.ns, o.sink, o.offset_seq,
                COALESCE(SUM(min(s.events, s.seq - o.offset_seq)), 0),
                COALESCE(SUM(s.bytes), 0), MIN(s.fetched_at),
                (SELECT COUNT(*) FROM dead_letters d WHERE d.ns = o.ns AND d.sink = o.sink)
             FROM sink_offsets o
             LEFT JOIN spool s ON s.ns = o.ns AND s.seq > o.offset_seq
                  AND (s.target IS NULL OR s.target = o.sink)
             WHERE o.active = 1
             GROUP BY o.ns, o.sink
             ORDER BY o.ns, o.sink",
        )?
        .query_map([], |row| {
            Ok(SinkState {
                ns: row.get(0)?,
                sink: row.get(1)?,
                offset: row.get(2)?,
                pending_events: row.get(3)?,
                pending_bytes: row.get(4)?,
                oldest_pending_fetched_at: row.get(5)?,
                dead_letters: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // The offset may lie inside a row: the bytes of that row's events up to the offset
    // are not pending. (Only the first row after the offset can hold such events, and
    // only a shared one: a replayed dead letter has a row of its own.)
    let mut straddling = tx.prepare_cached(
        "SELECT seq, events, frame, body FROM spool
         WHERE ns = ?1 AND seq > ?2 AND target IS NULL ORDER BY seq LIMIT 1",
    )?;
    for st in &mut states {
        let mut rows = straddling.query(params![st.ns, st.offset])?;
        let Some(row) = rows.next()? else { continue };
        let (last, n): (i64, i64) = (row.get(0)?, row.get(1)?);
        let first = last - n + 1;
        if first > st.offset {
            continue;
        }
        let (frame, text) = (text_ref(row, 2)?, text_ref(row, 3)?);
        let entries = rows::read(last, frame, text, n)?;
        let passed: usize = entries
            .iter()
            .take(usize::try_from(st.offset - first + 1).unwrap_or(0))
            .map(|e| e.body.len())
            .sum();
        st.pending_bytes -= to_i64(passed);
    }
    drop(straddling);
    Ok(states)
}

/// The value of `key` for `sink`, as stored.
fn meta_get(conn: &Connection, sink: &str, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM sink_meta WHERE sink = ?1 AND key = ?2")?
        .query_row(params![sink, key], |row| row.get(0))
        .optional()
}

/// Sets (`Some`) or deletes (`None`) one `sink_meta` value.
fn meta_set(conn: &Connection, sink: &str, key: &str, value: Option<&str>) -> Result<(), Fail> {
    match value {
        Some(v) => conn
            .prepare_cached(
                "INSERT INTO sink_meta (sink, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![sink, key, v])?,
        None => conn
            .prepare_cached("DELETE FROM sink_meta WHERE sink = ?1 AND key = ?2")?
            .execute(params![sink, key])?,
    };
    Ok(())
}

/// Adds `by` to the integer stored under `key` (0 when absent), in one transaction.
fn meta_add(db: &mut Db, sink: &str, key: &str, by: i64) -> Result<i64, Fail> {
    db.immediate(|tx| {
        let cur = meta_get(tx, sink, key)?;
        let next = cur.and_then(|v| i64::from_text(&v)).unwrap_or(0) + by;
        meta_set(tx, sink, key, Some(&next.to_text()))?;
        Ok(next)
    })
}
