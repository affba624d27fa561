//! A one-line progress display on stderr (`\r`-redrawn, at most 10 times a second), shown only
//! when stderr is a terminal, so piped runs and logs stay clean.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The shortest interval between two redraws.
const REDRAW: Duration = Duration::from_millis(100);

/// Progress of one step; cheap to update from any task of the (single-threaded) run.
pub struct Progress {
    label: String,
    total: u64,
    done: Cell<u64>,
    failed: Cell<u64>,
    start: Instant,
    last_draw: Cell<Option<Instant>>,
    enabled: bool,
}

impl Progress {
    /// Progress of `total` operations labelled `label`.
    pub fn new(label: &str, total: u64) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            done: Cell::new(0),
            failed: Cell::new(0),
            start: Instant::now(),
            last_draw: Cell::new(None),
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Counts one finished operation, failed or not, and redraws if it is time.
    pub fn tick(&self, ok: bool) {
        self.done.set(self.done.get() + 1);
        if !ok {
            self.failed.set(self.failed.get() + 1);
        }
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .get()
            .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return;
        }
        self.last_draw.set(Some(now));
        self.draw(now);
    }

    fn draw(&self, now: Instant) {
        let secs = now.duration_since(self.start).as_secs_f64();
        let done = self.done.get();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}: {done}/{} ({} failed) {secs:.1}s {rate:.0}/s",
            self.label,
            self.total,
            self.failed.get()
        );
        let _ = err.flush();
    }

    /// Clears the line (on drop).
    fn finish(&self) {
        if self.enabled && self.last_draw.get().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
