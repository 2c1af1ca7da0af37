//! The scheduler's own tests.

use super::RunError;
use crate::source::{ErrorClass, SourceError};

#[test]
fn a_fatal_feed_error_prints_its_cause_once() {
    let e = RunError::from(SourceError::new(
        ErrorClass::Operator,
        "refused the feed's next URI",
    ));
    let chain = format!("{:#}", anyhow::Error::from(e).context("backfill failed"));
    assert_eq!(chain, "backfill failed: refused the feed's next URI");
}
