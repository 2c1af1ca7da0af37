//! sigsci-export: moves Signal Sciences (Fastly Next-Gen WAF) request data into SIEMs.
//!
//! ```text
//! config::load ─► scheduler ─► source (feed API client) ─► store::commit_page
//!   file, env,     one task per    one HTTP call = one page;    ONE SQLite transaction:
//!   validate       site; live      governor wait first;         spool the page's events
//!                  ticks or        status → SourceError         AND advance the site's cursor
//!                  backfill range                                        │
//!   store::settle(sink, upto) ◄── sink::driver (one task per sink) ◄─────┘
//!   "sink offset"                  read batch ─► pipeline (shape) ─► Sink::send ─► classify ─► retry or settle
//! ```
//!
//! Two commits, never one: a site's cursor moves only in the transaction that makes the page's
//! events durable, and each sink's offset moves only over events it has settled. A crash at any
//! point re-fetches or resends, never skips: at least once, no gaps.
//!
//! Modules, in the order data flows: [`config`] (with [`secret`]), [`scheduler`], [`source`],
//! [`store`], [`pipeline`], [`sink`]; around them [`cli`], [`telemetry`], [`shutdown`],
//! [`time`], and [`sim`], the feed API simulator used by `demo` and the tests.

pub mod admin;
pub mod check;
pub mod cli;
pub mod config;
pub mod feed_anomalies;
#[doc(hidden)]
pub mod fuzzing;
pub mod page_budget;
pub mod pipeline;
pub mod scheduler;
pub mod secret;
pub mod shutdown;
pub mod sim;
pub mod sink;
pub mod site_health;
pub mod source;
pub mod spool_limit;
pub mod status;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod time;
mod window_pages;
