//! Source positions: the `cursors` table, one row per (namespace, corp, site), and
//! [`SiteKey`], the key of every per-site table (`seen`, `gaps`, `site_errors`, the spool's
//! site columns).
//!
//! A cursor is written only inside [`Store::commit_page`]'s transaction (see `spool`), so it
//! never runs ahead of the events it stands for; this module reads it and lends that
//! transaction its SQL.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Store;
use super::conn::all;
use super::error::StoreError;
use crate::time::now;

/// Identifies one source position: cursor namespace (`"run"` or
/// `"backfill:<from>-<until>"`), corp and site.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey {
    /// Cursor namespace: `run` for the service, one per range for backfills, so a backfill
    /// never moves the service's cursors and has its own sink offsets.
    pub ns: String,
    /// Corp name.
    pub corp: String,
    /// Site name.
    pub site: String,
}

impl fmt::Display for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.ns, self.corp, self.site)
    }
}

impl SiteKey {
    /// The key in the first three columns of `row` (`ns, corp, site`, as every per-site
    /// listing selects them).
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<SiteKey> {
        Ok(SiteKey {
            ns: row.get(0)?,
            corp: row.get(1)?,
            site: row.get(2)?,
        })
    }
}

/// Where one site stands (for status/logging).
#[derive(Clone, Debug, PartialEq)]
pub struct CursorRow {
    /// The site.
    pub key: SiteKey,
    /// The stored source cursor.
    pub cursor: i64,
    /// When it was last written, Unix seconds.
    pub updated_at: i64,
}

impl Store {
    /// The stored cursor of a site, `None` before its first committed page.
    pub async fn cursor(&self, key: &SiteKey) -> Result<Option<i64>, StoreError> {
        let key = key.clone();
        self.run("cursor", move |db| Ok(read(&db.conn, &key)?))
            .await
    }

    /// Every stored cursor, ordered by namespace, corp and site.
    pub async fn cursors(&self) -> Result<Vec<CursorRow>, StoreError> {
        self.run("cursors", |db| {
            all(
                &db.conn,
                "SELECT ns, corp, site, cursor, updated_at FROM cursors ORDER BY ns, corp, site",
                [],
                |row| {
                    Ok(CursorRow {
                        key: SiteKey::from_row(row)?,
                        cursor: row.get(3)?,
                        updated_at: row.get(4)?,
                    })
                },
            )
        })
        .await
    }
}

/// The stored cursor of `key`.
pub(super) fn read(conn: &Connection, key: &SiteKey) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT cursor FROM cursors WHERE ns = ?1 AND corp = ?2 AND site = ?3")?
        .query_row(params![key.ns, key.corp, key.site], |row| row.get(0))
        .optional()
}

/// Moves the cursor of `key` to `cursor` (the caller checked it does not move backwards).
pub(super) fn write(conn: &Connection, key: &SiteKey, cursor: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO cursors (ns, corp, site, cursor, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (ns, corp, site)
         DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    )?
    .execute(params![key.ns, key.corp, key.site, cursor, now()])?;
    Ok(())
}
