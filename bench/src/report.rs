//! The markdown report: a header that names the commit, the machine and the date of the one
//! run every table comes from, then one section per scenario.

use crate::Pinning;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Report {
    started: DateTime<Utc>,
    commit: String,
    machine: String,
    setup: Vec<String>,
    sections: Vec<String>,
}

impl Report {
    /// Notes the commit, machine and time at the start of the run.
    pub fn begin(pinning: Pinning, metrics: bool) -> Self {
        let mut setup = vec![pinning.describe().to_owned()];
        setup.push(if metrics {
            "Every server runs with `--metrics-listen`, so its metrics are recorded as in a \
             monitored deployment; cache and Argon2 counts come from its Prometheus counters."
                .to_owned()
        } else {
            "This `jeton serve` exposes no metrics (no `--metrics-listen`): cache hit rates \
             and Argon2 counts are n/a."
                .to_owned()
        });
        if cfg!(debug_assertions) {
            setup.push(
                "**Debug build: these figures are not representative; build with \
                 `--release`.**"
                    .to_owned(),
            );
        }
        Self {
            started: Utc::now(),
            commit: commit(),
            machine: machine(),
            setup,
            sections: Vec::new(),
        }
    }

    pub fn push(&mut self, section: String) {
        self.sections.push(section);
    }

    pub fn render(&self) -> String {
        let minutes = (Utc::now() - self.started).num_seconds() as f64 / 60.0;
        let mut doc = format!(
            "# Benchmarks\n\n\
             Measured by `jeton-bench` at commit `{}`, started {} UTC and lasting {minutes:.0} \
             min: every table below comes from this one run. Reproduce with:\n\n\
             ```sh\ncargo build --release --workspace && target/release/jeton-bench\n```\n\n\
             How these figures compare with jeton's targets, and where the time goes: \
             [docs/performance.md](docs/performance.md).\n\n\
             {}\n\n{}\n",
            self.commit,
            self.started.format("%Y-%m-%d %H:%M"),
            self.machine,
            self.setup.join(" "),
        );
        for section in &self.sections {
            let _ = write!(doc, "\n{}", section.trim_end());
            doc.push('\n');
        }
        doc
    }
}

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for c in cells {
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
        s
    };
    let mut t = line(&mut header.iter().copied());
    t.push_str(&line(&mut header.iter().map(|_| "---")));
    for row in rows {
        t.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    t
}

/// The median (0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `git rev-parse --short HEAD` of the tree the benchmark was built in, "+dirty" when
/// `git status --porcelain` lists anything.
///
/// The tree is found from this package's source folder, recorded at build time: the binary's
/// own folder is outside the repository whenever `CARGO_TARGET_DIR` points elsewhere. The
/// current directory, then the binary's folder, are the fallbacks for a binary run after its
/// sources moved.
fn commit() -> String {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let dirs = [
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        std::env::current_dir().ok(),
        exe_dir,
    ];
    dirs.into_iter()
        .flatten()
        .filter(|d| d.is_dir())
        .find_map(|d| commit_of(&d))
        .unwrap_or_else(|| "unknown".into())
}

/// The commit of the git work tree holding `dir`, if it is in one.
fn commit_of(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    Some(match git(&["status", "--porcelain"]) {
        Some(status) if status.is_empty() => hash,
        Some(_) => format!("{hash}+dirty"),
        None => format!("{hash}+unknown"),
    })
}

/// "Machine: N cores (model), M GiB; rustc …."
fn machine() -> String {
    format!(
        "Machine: {} cores ({}), {} GiB; {}.",
        cores(),
        cpu_model(),
        total_mem_gib(),
        env!("JETON_BENCH_RUSTC")
    )
}

/// Cores of the machine (not of this process's affinity mask, which pinning narrows).
pub fn cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn total_mem_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| (kb + 512 * 1024) / 1024 / 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn table_has_a_rule_under_its_header() {
        let t = super::table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
    }
}
