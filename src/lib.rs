//! sigsci-export: moves Signal Sciences (Fastly Next-Gen WAF) request data into SIEMs.
//!
//! ```text
//! config::load ─► scheduler ─► source (dyn Source: v0 feed) ─► store::commit_page
//!   file, env,     one task per    one HTTP call = one page;    ONE SQLite transaction:
//!   validate       partition;      governor wait first;         spool the page's events
//!                  live ticks or   error → ErrorClass           AND advance the site's cursor
//!                  backfill range                                        │
//!   store::settle(sink, upto) ◄── sink::driver (one task per sink) ◄─────┘
//!   "sink offset"                  read batch ─► pipeline (shape) ─► Sink::send ─► classify ─► retry or settle
//! ```
//!
//! Two commits, never one: a site's cursor moves only in the transaction that makes the page's
//! events durable, and each sink's offset moves only over events it has settled. A crash at any
//! point re-fetches or resends, never skips: at least once, no gaps.
//!
//! Modules, in the order data flows: [`config`] (with [`secret`]), [`scheduler`] (with
//! [`store::bound`], the spool bound it waits on before each request), [`source`] (the boundary
//! the scheduler drives, and the v0 feed behind it), [`store`], [`pipeline`], [`sink`]. Around
//! them: [`cli`] and [`cmd`], one module per command (`run`, `backfill`, `check`, `status`,
//! `dead-letters`, `healthcheck`, `simulate`, `demo`) that `main.rs` dispatches to;
//! [`telemetry`] (logs), [`health`] (what is blocked, the heartbeat), [`admin`] (metrics and
//! health endpoint), [`systemd`] (readiness and watchdog), [`shutdown`] and [`time`] (the one
//! clock and RFC 3339 formatter);
//! [`sim`], the feed API simulator and the HEC and Elasticsearch receivers used by `demo`, the
//! tests and the bench; and `fuzzing`, the cargo-fuzz targets' entry points (feature `fuzzing`).

// The library prints nothing (logs go through `tracing`, the commands in `cmd` return what
// `main.rs` prints, the stdout sink writes to its writer; only `cmd::simulate` and `cmd::demo`
// print their start-up banners) and does not unwrap outside tests (clippy.toml). `main.rs`,
// the bench and the tests are crates of their own and may print.
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

pub mod admin;
pub mod cli;
pub mod cmd;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod health;
pub mod pipeline;
pub mod scheduler;
pub mod secret;
pub mod shutdown;
// Left for the move of the simulator to its own crate, which fixes them there: the nested
// `if` in `Simulator::shutdown` (a let-chain since rust-version 1.88), two doc links in
// `sim::events::write_json` that do not resolve, and an `unwrap` in `sim::hec`.
#[allow(
    clippy::collapsible_if,
    clippy::unwrap_used,
    rustdoc::broken_intra_doc_links
)]
pub mod sim;
pub mod sink;
pub mod source;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod time;
