//! What the run shows while it lasts (many minutes): the scenario, and one bar or spinner per
//! phase, on stderr. Without a terminal the bars are hidden and each phase is one line.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    /// A line above the bars.
    pub fn println(&self, line: &str) {
        if self.multi.is_hidden() || self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    pub fn scenario(&self, i: usize, n: usize, title: &str) {
        self.println(&format!("[{i}/{n}] {title}"));
    }

    /// A bar counting `len` steps.
    pub fn counter(&self, len: u64, msg: impl Into<String>) -> ProgressBar {
        let msg = msg.into();
        if self.multi.is_hidden() {
            eprintln!("      {msg} ({len})");
        }
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(
                "      {msg:48} [{bar:30}] {human_pos}/{human_len} {elapsed_precise} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(msg);
        bar
    }

    /// A spinner for a phase of unknown length.
    pub fn spinner(&self, msg: impl Into<String>) -> ProgressBar {
        let msg = msg.into();
        if self.multi.is_hidden() {
            eprintln!("      {msg}");
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("      {spinner} {msg} {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(msg);
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }
}
