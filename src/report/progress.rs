//! Progress bars for a person at a terminal: rows, rows per second and the time left of each long
//! stage (reading and writing a dataset, profiling it for the privacy search, indexing a delivery
//! for linkage). Off unless the command line turns them on, which it does only when stderr is a
//! terminal and logs are text: batch jobs and pipes see nothing. A bar shows counts, never a value.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the bars on for the rest of the process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// One stage's bar, measured in bytes of its source files (known before reading), labelled with
/// rows. Cleared when dropped.
pub struct Stage {
    bar: Option<ProgressBar>,
    rows: AtomicU64,
    started: Instant,
}

impl Stage {
    /// A bar for `label` over `files` (their sizes make the total).
    pub fn new(label: &str, files: &[PathBuf]) -> Stage {
        let total = || {
            files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum()
        };
        Stage::with_bar(label, "{msg}", total)
    }

    /// A stage whose bar (shown only when enabled) runs to `total()` with `counts` after the bar.
    fn with_bar(label: &str, counts: &str, total: impl FnOnce() -> u64) -> Stage {
        let bar = ENABLED.load(Ordering::Relaxed).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total()), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>20}} [{{bar:24}}] {{percent:>3}}%  {counts}  ETA {{eta}}"
                ))
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.set_message("0 rows");
            bar.tick();
            bar
        });
        Stage {
            bar,
            rows: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `rows` more rows, covering `bytes` more bytes of the source.
    pub fn advance(&self, rows: u64, bytes: u64) {
        let Some(bar) = &self.bar else {
            return;
        };
        let done = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{} rows, {} rows/s",
            done,
            (done as f64 / seconds).round() as u64
        ));
        bar.inc(bytes);
    }
}

impl Stage {
    /// A bar over `rows` rows known beforehand (a spill written out), labelled `label`; advance
    /// it by rows alone.
    pub fn of_rows(label: &str, rows: u64) -> Stage {
        Stage::with_bar(label, "{pos} of {len} rows", || rows)
    }

    /// `rows` more rows of a bar made by [`Stage::of_rows`].
    pub fn advance_rows(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
    }
}

/// The privacy search of a dataset: the transformations evaluated and the best score so far,
/// redrawn while it runs.
pub struct Search {
    bar: Option<ProgressBar>,
}

impl Search {
    pub fn new(label: &str) -> Search {
        let bar = ENABLED.load(Ordering::Relaxed).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>20} {spinner} {msg}  {elapsed}")
                    .expect("a valid template"),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Search { bar }
    }

    /// Runs `search`, showing what `watch` says of it every tenth of a second.
    pub fn while_running<T>(
        &self,
        watch: &crate::privacy::lattice::Watch,
        search: impl FnOnce() -> T,
    ) -> T {
        let Some(bar) = &self.bar else {
            return search();
        };
        let show = || {
            let best = watch.best().map_or("none feasible yet".to_string(), |b| {
                format!("best score {b:.4}")
            });
            bar.set_message(format!(
                "{} transformations evaluated, {best}",
                watch.evaluated()
            ));
            bar.tick();
        };
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    show();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            let found = search();
            done.store(true, Ordering::Relaxed);
            show();
            found
        })
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
