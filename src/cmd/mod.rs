//! The commands, one module each.

pub mod check;
pub mod status;
