//! Follows the database's change log and drops from this replica's cache whatever another
//! replica changed, within one poll interval.
//!
//! Change numbers are handed out at insert, not at commit: a transaction that took number 7
//! can commit after the one that took 8, and reading "after the highest number seen" would
//! skip 7 for ever. So the follower keeps a [`Watermark`]: a `floor` below which everything
//! was applied, and the numbers seen above it; it applies any row above the floor that it has
//! not seen yet, and moves the floor only over contiguous numbers — or over a hole that
//! stayed open for [`GAP_PATIENCE`] (a rolled-back transaction leaves one).
//!
//! When the log cannot be read, the cache is emptied and, after `stale_after`, not used at
//! all: a replica cut off from the log must not keep answering from memory.

use super::cache::ValidationCache;
use crate::background::Task;
use crate::store::Store;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a hole in the change-log numbering is waited for before it is taken for a
/// rolled-back transaction. Longer than any write transaction of jeton's can stay open.
const GAP_PATIENCE: Duration = Duration::from_secs(10);
/// Change-log rows older than this are deleted.
const KEEP_CHANGES: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// How often old change-log rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most change-log rows read in one poll.
const BATCH: u64 = 10_000;

/// Position of a follower in the change log.
#[derive(Debug, Default)]
struct Watermark {
    floor: i64,
    seen: BTreeSet<i64>,
    holes: HashMap<i64, Instant>,
}

impl Watermark {
    fn at(floor: i64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    /// Whether `seq` is new (and records it as seen).
    fn admit(&mut self, seq: i64) -> bool {
        seq > self.floor && self.seen.insert(seq)
    }

    /// Moves the floor over what is contiguous or given up on.
    fn advance(&mut self, now: Instant) {
        while let Some(&first) = self.seen.first() {
            let next = self.floor + 1;
            if first == next {
                self.seen.remove(&first);
                self.floor = next;
                self.holes.remove(&next);
            } else {
                let since = *self.holes.entry(next).or_insert(now);
                if now.duration_since(since) >= GAP_PATIENCE {
                    self.holes.remove(&next);
                    self.floor = next;
                } else {
                    break;
                }
            }
        }
    }
}

/// Starts following the change log every `every` until the returned task is stopped.
pub(super) fn start(store: Store, cache: Arc<ValidationCache>, every: Duration) -> Task {
    Task::spawn("change-log follower", move |mut stop| async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut follower = Follower {
            store,
            cache,
            mark: None,
            failing: false,
            last_prune: Instant::now(),
        };
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = tick.tick() => follower.poll().await,
            }
        }
    })
}

struct Follower {
    store: Store,
    cache: Arc<ValidationCache>,
    /// `None` until the newest change number has been read once.
    mark: Option<Watermark>,
    failing: bool,
    last_prune: Instant,
}

impl Follower {
    async fn poll(&mut self) {
        let read = match &mut self.mark {
            None => self.store.last_change().await.map(|seq| {
                self.mark = Some(Watermark::at(seq));
            }),
            Some(mark) => self
                .store
                .changes_after(mark.floor, BATCH)
                .await
                .map(|rows| {
                    let mut oldest = None;
                    for row in rows {
                        if mark.admit(row.seq) {
                            oldest = oldest.or(Some(row.at_micros));
                            if let Some(what) = row.what {
                                self.cache.invalidate(&what);
                            }
                        }
                    }
                    mark.advance(Instant::now());
                    if let Some(m) = crate::metrics::get() {
                        let now = chrono::Utc::now().timestamp_micros();
                        let lag = oldest.map_or(0, |at| (now - at).max(0));
                        m.change_log_lag.set(lag as f64 / 1e6);
                        m.change_log_last_poll.set(now as f64 / 1e6);
                    }
                }),
        };
        match read {
            Ok(()) => {
                self.cache.mark_fresh();
                if self.failing {
                    tracing::info!("following the change log again");
                    self.failing = false;
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "cannot read the change log; cached answers are not used until it can");
                    self.failing = true;
                }
                self.cache.clear();
            }
        }
        if self.last_prune.elapsed() > PRUNE_EVERY {
            self.last_prune = Instant::now();
            if let Err(e) = self
                .store
                .prune_changes(chrono::Utc::now() - KEEP_CHANGES)
                .await
            {
                tracing::debug!(error = %e, "pruning the change log failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_late_commits() {
        let t0 = Instant::now();
        let mut c = Watermark::at(5);
        // 7 commits before 6.
        assert!(c.admit(7));
        c.advance(t0);
        assert_eq!(c.floor, 5, "6 may still commit");
        assert!(!c.admit(7), "7 is not applied twice");
        assert!(c.admit(6));
        c.advance(t0);
        assert_eq!(c.floor, 7);
        assert!(!c.admit(6));
    }

    #[test]
    fn watermark_gives_up_on_a_hole_after_a_while() {
        let t0 = Instant::now();
        let mut c = Watermark::at(0);
        assert!(c.admit(2));
        c.advance(t0);
        assert_eq!(c.floor, 0);
        c.advance(t0 + GAP_PATIENCE);
        assert_eq!(c.floor, 2, "1 was rolled back");
    }
}
