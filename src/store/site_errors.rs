//! The last fetch error of each site (`site_errors`), kept for `status`: the scheduler logs
//! every failure, and this is what an operator sees afterwards without the logs.

use rusqlite::params;

use super::conn::all;
use super::error::StoreError;
use super::{SiteKey, Store};
use crate::time::now;

/// The most recent fetch error of a site.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteError {
    /// The site.
    pub key: SiteKey,
    /// The error, as logged.
    pub error: String,
    /// When it happened.
    pub at: i64,
}

impl Store {
    /// Remembers the latest fetch error of a site.
    pub async fn set_site_error(&self, key: &SiteKey, error: &str) -> Result<(), StoreError> {
        let key = key.clone();
        let error = error.to_owned();
        self.run("set_site_error", move |db| {
            db.conn
                .prepare_cached(
                    "INSERT INTO site_errors (ns, corp, site, error, at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (ns, corp, site) DO UPDATE SET error = excluded.error, at = excluded.at",
                )?
                .execute(params![key.ns, key.corp, key.site, error, now()])?;
            Ok(())
        })
        .await
    }

    /// The latest fetch error of every site that had one.
    pub async fn site_errors(&self) -> Result<Vec<SiteError>, StoreError> {
        self.run("site_errors", |db| {
            all(
                &db.conn,
                "SELECT ns, corp, site, error, at FROM site_errors ORDER BY ns, corp, site",
                [],
                |row| {
                    Ok(SiteError {
                        key: SiteKey::from_row(row)?,
                        error: row.get(3)?,
                        at: row.get(4)?,
                    })
                },
            )
        })
        .await
    }
}
