//! End-to-end tests: the real `sigsci-export` binary against the in-process simulator, all on
//! 127.0.0.1 with ports chosen at run time. One integration binary (ripgrep's layout).

mod chaos;
mod cli;
mod config_errors;
mod crash;
mod delivery;
mod elasticsearch;
mod exclusive;
mod hec;
mod hostile_feed;
mod ops;
mod pki;
mod shape;
mod stuck_site;
mod support;
