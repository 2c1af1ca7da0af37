//! Log lines above the backfill's progress bar, not through it.
//!
//! The bar redraws its line in place on stderr. A log line written straight to stderr lands on
//! the bar's line, and the bar's next frame is drawn under it: the old frame stays behind,
//! above the log line, every time. So every log write goes through [`StderrAboveBar`]: while a
//! bar is shown ([`logs_above`]), the write runs inside [`ProgressBar::suspend`], which clears
//! the bar, lets the line out, and draws the bar again below it.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;

/// The bar log lines go above, while one is shown.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Logs go above `bar` until the returned guard is dropped.
pub fn logs_above(bar: ProgressBar) -> LogsAboveBar {
    *BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar);
    LogsAboveBar { _private: () }
}

/// While it lives, log lines are written above the bar given to [`logs_above`].
#[derive(Debug)]
pub struct LogsAboveBar {
    _private: (),
}

impl Drop for LogsAboveBar {
    fn drop(&mut self) {
        *BAR.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The log writer: stderr, above the progress bar when one is shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAboveBar;

impl<'a> MakeWriter<'a> for StderrAboveBar {
    type Writer = AboveBar<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        AboveBar::new(
            BAR.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            io::stderr(),
        )
    }
}

/// Writes to `inner` with `bar` (if any) cleared for the time of each write.
#[derive(Debug)]
pub struct AboveBar<W> {
    bar: Option<ProgressBar>,
    inner: W,
}

impl<W: Write> AboveBar<W> {
    /// Writes to `inner` above `bar`.
    pub fn new(bar: Option<ProgressBar>, inner: W) -> AboveBar<W> {
        AboveBar { bar, inner }
    }

    fn around<R>(&mut self, f: impl FnOnce(&mut W) -> R) -> R {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| f(&mut self.inner)),
            _ => f(&mut self.inner),
        }
    }
}

impl<W: Write> Write for AboveBar<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.around(|w| w.write(buf))
    }

    // A log line is one `write_all`: the bar is cleared and drawn once per line, not per
    // partial write.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.around(|w| {
            w.write_all(buf)?;
            w.flush()
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use indicatif::{ProgressDrawTarget, TermLike};

    use super::*;

    /// A terminal that records what is drawn on it, and log writes, in one sequence.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn push(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
        fn ops(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            self.push(format!("up {n}"));
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.push(format!("bar {s}"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            // Padding to the line's end is not a frame.
            if !s.trim().is_empty() {
                self.push(format!("bar {s}"));
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.push("clear".into());
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.push(format!("log {}", String::from_utf8_lossy(buf).trim_end()));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_clears_the_bar_and_the_bar_is_drawn_again_below_it() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            Some(10),
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.set_style(indicatif::ProgressStyle::with_template("{pos}/{len}").unwrap());
        bar.set_position(3);
        let drawn = screen.ops();
        assert_eq!(
            drawn.last().map(String::as_str),
            Some("bar 3/10"),
            "{drawn:?}"
        );

        let mut w = AboveBar::new(Some(bar.clone()), screen.clone());
        w.write_all(b"INFO a log line\n").unwrap();
        let after = screen.ops()[drawn.len()..].to_vec();
        let log = after
            .iter()
            .position(|o| o == "log INFO a log line")
            .unwrap();
        // The bar's frame is wiped before the line goes out, and a frame follows it.
        assert!(after[..log].contains(&"clear".to_string()), "{after:?}");
        assert_eq!(
            after[log + 1..].last().map(String::as_str),
            Some("bar 3/10"),
            "{after:?}"
        );
    }

    #[test]
    fn the_guard_routes_logs_while_it_lives() {
        let bar = ProgressBar::hidden();
        {
            let _g = logs_above(bar);
            assert!(StderrAboveBar.make_writer().bar.is_some());
        }
        assert!(StderrAboveBar.make_writer().bar.is_none());
    }
}
