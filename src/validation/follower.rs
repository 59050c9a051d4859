//! Follows the database's change log and drops from this replica's cache whatever another
//! replica changed, within one poll interval.
//!
//! Change numbers are handed out at insert, not at commit: a transaction that took number 7
//! can commit after the one that took 8, and reading "after the highest number seen" alone
//! would skip 7 for ever. So the follower keeps a [`Watermark`]: the highest number seen,
//! and the *holes* below it — ranges of numbers not seen yet. Each poll reads what is new
//! above the highest number and, separately, whatever has appeared in the holes; a hole is
//! given up on after [`GAP_PATIENCE`] (a rolled-back transaction leaves one for good). A
//! replica that starts counts the last [`START_LOOKBACK`] numbers as holes, so a write that
//! was still open when it started is applied when it commits; a burst of new changes never
//! hides a late commit, because the holes are read on their own.
//!
//! When the log cannot be read, the cache is not used once `stale_after` has passed since
//! the last read that caught up: a replica cut off from the log must not keep answering from
//! memory (but see `--stale-if-error`, when no database host answers at all). Its entries
//! are kept, and so is the follower's position: the read that succeeds again takes in every
//! change made meanwhile before the cache is trusted again.
//!
//! The log is read on whichever host holds every acknowledged change (the primary, or
//! during a failover a synchronous standby). When that host changes, the position is taken
//! again on the new one ([`Watermark::reanchored`]): change numbers handed out by a primary
//! that died before its standby had them may be handed out again by the standby promoted
//! in its place, so the follower's highest number becomes the new host's, and everything
//! between what it had seen and that is read again.

use super::cache::ValidationCache;
use crate::background::Task;
use crate::store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a hole in the change-log numbering is waited for before it is taken for a
/// rolled-back transaction. Longer than any write transaction of jeton's can stay open.
const GAP_PATIENCE: Duration = Duration::from_secs(10);
/// Change-log rows older than this are deleted.
const KEEP_CHANGES: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// How often old change-log rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most change-log rows read by one query.
const BATCH: u64 = 10_000;
/// Numbers below the newest that a starting replica treats as possibly still open.
const START_LOOKBACK: i64 = 10_000;
/// Most holes asked about in one query (the oldest first).
const HOLES_PER_QUERY: usize = 256;

/// Position of a follower in the change log.
#[derive(Debug)]
struct Watermark {
    /// The highest number seen.
    high: i64,
    /// Numbers at or below `high` not seen yet: inclusive ranges by first number, each with
    /// when it was first noticed.
    holes: BTreeMap<i64, (i64, Instant)>,
}

impl Watermark {
    /// A replica starting when `last` is the newest number: everything in the last
    /// [`START_LOOKBACK`] numbers may still be open.
    fn starting_at(last: i64, now: Instant) -> Self {
        let mut holes = BTreeMap::new();
        let first = (last - START_LOOKBACK + 1).max(1);
        if first <= last {
            holes.insert(first, (last, now));
        }
        Self { high: last, holes }
    }

    /// The same position on another host whose newest number is `last`: numbers above
    /// `last` are new there whatever was seen on the old host (they may be handed out again),
    /// and the numbers between the old highest and `last`, with the old holes at or below
    /// `last`, are read there.
    fn reanchored(mut self, last: i64, now: Instant) -> Self {
        let mut holes = BTreeMap::new();
        for (start, (end, since)) in std::mem::take(&mut self.holes) {
            if start <= last {
                holes.insert(start, (end.min(last), since));
            }
        }
        if last > self.high {
            holes.insert(self.high + 1, (last, now));
        }
        Self { high: last, holes }
    }

    /// Everything below this was applied or given up on.
    #[cfg(test)]
    fn floor(&self) -> i64 {
        self.holes
            .keys()
            .next()
            .map_or(self.high, |first| first - 1)
    }

    /// Whether `seq` is new (and records it as seen): above the highest number (the numbers
    /// skipped on the way become a hole), or inside a hole (which is split around it).
    fn admit(&mut self, seq: i64, now: Instant) -> bool {
        if seq > self.high {
            if seq > self.high + 1 {
                self.holes.insert(self.high + 1, (seq - 1, now));
            }
            self.high = seq;
            return true;
        }
        let Some((&start, &(end, since))) = self.holes.range(..=seq).next_back() else {
            return false;
        };
        if seq > end {
            return false;
        }
        self.holes.remove(&start);
        if start < seq {
            self.holes.insert(start, (seq - 1, since));
        }
        if seq < end {
            self.holes.insert(seq + 1, (end, since));
        }
        true
    }

    /// Gives up on the holes that stayed open for [`GAP_PATIENCE`].
    fn expire(&mut self, now: Instant) {
        self.holes
            .retain(|_, (_, since)| now.duration_since(*since) < GAP_PATIENCE);
    }

    /// The oldest holes, to ask the log about.
    fn oldest_holes(&self) -> Vec<(i64, i64)> {
        self.holes
            .iter()
            .take(HOLES_PER_QUERY)
            .map(|(&start, &(end, _))| (start, end))
            .collect()
    }
}

/// Starts following the change log every `every` until the returned task is stopped.
pub(super) fn start(store: Store, cache: Arc<ValidationCache>, every: Duration) -> Task {
    Task::spawn("change-log follower", move |mut stop| async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut follower = Follower {
            epoch: store.roles().epoch,
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
    /// The store's host epoch the position was taken on.
    epoch: u64,
    failing: bool,
    last_prune: Instant,
}

impl Follower {
    /// Reads what is new above the highest number and what appeared in the holes, and drops
    /// what each change names from the cache. Answers whether that read took in every change
    /// committed before it began: not when a query filled its batch, or when there were
    /// more holes than one query asks about.
    async fn follow(&mut self, mark: &mut Watermark) -> Result<bool, crate::store::StoreError> {
        let holes = mark.oldest_holes();
        let mut complete = mark.holes.len() <= HOLES_PER_QUERY;
        let mut rows = self.store.changes_after(mark.high, BATCH).await?;
        complete &= (rows.len() as u64) < BATCH;
        if !holes.is_empty() {
            let appeared = self.store.changes_in(&holes, BATCH).await?;
            complete &= (appeared.len() as u64) < BATCH;
            rows.extend(appeared);
        }
        let now = Instant::now();
        let mut oldest = None;
        for row in rows {
            if mark.admit(row.seq, now) {
                oldest = oldest.or(Some(row.at_micros));
                if let Some(what) = row.what {
                    self.cache.invalidate(&what);
                }
            }
        }
        mark.expire(now);
        if let Some(m) = crate::metrics::get() {
            let now = chrono::Utc::now().timestamp_micros();
            let lag = oldest.map_or(0, |at| (now - at).max(0));
            m.change_log_lag.set(lag as f64 / 1e6);
            m.change_log_last_poll.set(now as f64 / 1e6);
        }
        Ok(complete)
    }

    /// Takes the position again on the host reads now go to, and reads from there.
    async fn reanchor(
        &mut self,
        mark: Watermark,
    ) -> Result<(Watermark, bool), crate::store::StoreError> {
        let last = match self.store.last_change().await {
            Ok(last) => last,
            Err(e) => {
                self.mark = Some(mark);
                return Err(e);
            }
        };
        let mut moved = mark.reanchored(last, Instant::now());
        tracing::info!(last, "following the change log on another host");
        let complete = self.follow(&mut moved).await;
        match complete {
            Ok(c) => Ok((moved, c)),
            Err(e) => {
                self.mark = Some(moved);
                Err(e)
            }
        }
    }

    async fn poll(&mut self) {
        let began = self.cache.read_begins();
        let epoch = self.store.roles().epoch;
        // On a synchronous standby, what was acknowledged before `began` is flushed there but
        // maybe not applied yet: a read that cannot see it renews no trust.
        let settled = self.store.settle_reads().await.unwrap_or(false);
        let read = match self.mark.take() {
            // The first read only finds where the log stands: changes still open below it
            // are taken in by the next, so it renews no trust.
            None => self
                .store
                .last_change()
                .await
                .map(|seq| (Watermark::starting_at(seq, Instant::now()), false)),
            Some(mark) if epoch != self.epoch => self.reanchor(mark).await,
            Some(mut mark) => match self.follow(&mut mark).await {
                Ok(complete) => Ok((mark, complete)),
                Err(e) => {
                    // A failed read applied nothing: the position is kept for the next.
                    self.mark = Some(mark);
                    Err(e)
                }
            },
        };
        match read {
            Ok((mark, complete)) => {
                self.mark = Some(mark);
                self.epoch = epoch;
                self.cache.cut_off(false);
                if complete && settled {
                    self.cache.mark_fresh(began);
                }
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
                self.cache.cut_off(!self.store.reachable_after(&e));
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
    use crate::domain::TokenId;
    use crate::validation::cache::{CacheSettings, Lookup, Ticker};

    /// Answers from memory are trusted again only after a read that took in every change
    /// committed before it began: not the first read, which only finds where the log
    /// stands, nor one whose query filled its batch (more changes wait behind it).
    /// On another host, numbers above that host's newest are new (a promoted standby may
    /// hand out again numbers its dead primary had handed out), and everything between the
    /// old position and the new host's newest is read there.
    #[test]
    fn a_position_taken_again_on_another_host() {
        let now = Instant::now();
        let mut m = Watermark::starting_at(100, now);
        m.holes.clear();
        assert!(m.admit(103, now), "101 and 102 become a hole");
        // The new host has up to 110: the hole stays, 104..=110 are to be read.
        let moved = Watermark {
            high: m.high,
            holes: m.holes.clone(),
        }
        .reanchored(110, now);
        assert_eq!(moved.high, 110);
        assert_eq!(moved.oldest_holes(), [(101, 102), (104, 110)]);
        // The new host is behind what was seen (102 and 103 died with the old primary): it
        // hands out 102 and 103 again, and the follower takes them as new.
        let mut behind = Watermark {
            high: 103,
            holes: BTreeMap::from([(101, (102, now))]),
        }
        .reanchored(101, now);
        assert_eq!(behind.high, 101);
        assert_eq!(behind.oldest_holes(), [(101, 101)]);
        assert!(behind.admit(102, now) && behind.admit(103, now));
    }

    #[tokio::test]
    async fn only_a_read_that_caught_up_renews_trust() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite_in(dir.path()).await;
        let ticker = Ticker::manual();
        let cache = Arc::new(ValidationCache::new(
            &CacheSettings::for_tests(),
            ticker.clone(),
        ));
        // Whether the cache answers from memory: an id remembered as absent is found.
        let probe = TokenId::parse(&"P".repeat(22)).unwrap();
        let trusted = || {
            cache.remember_absent(cache.token_epoch(&probe), &probe);
            matches!(cache.token(&probe), Lookup::Absent)
        };
        let mut follower = Follower {
            epoch: store.roles().epoch,
            store,
            cache: cache.clone(),
            mark: None,
            failing: false,
            last_prune: Instant::now(),
        };
        let past_trust = Duration::from_millis(1001);

        assert!(trusted(), "for stale_after from its creation");
        ticker.advance(past_trust);
        assert!(!trusted());
        follower.poll().await;
        assert!(!trusted(), "the first read renews nothing");
        follower.poll().await;
        assert!(trusted(), "the second took in everything since the first");

        follower.store.append_burst(BATCH + 1).await.unwrap();
        ticker.advance(past_trust);
        follower.poll().await;
        assert!(!trusted(), "a read that filled its batch renews nothing");
        follower.poll().await;
        assert!(trusted(), "caught up");
    }

    #[test]
    fn watermark_waits_for_late_commits() {
        let t0 = Instant::now();
        let mut c = Watermark::starting_at(5, t0);
        c.holes.clear(); // nothing open at start, for this case
        // 7 commits before 6.
        assert!(c.admit(7, t0));
        assert_eq!(c.floor(), 5, "6 may still commit");
        assert!(!c.admit(7, t0), "7 is not applied twice");
        assert!(c.admit(6, t0));
        assert_eq!(c.floor(), 7);
        assert!(!c.admit(6, t0));
    }

    #[test]
    fn watermark_gives_up_on_a_hole_after_a_while() {
        let t0 = Instant::now();
        let mut c = Watermark::starting_at(0, t0);
        assert!(c.admit(2, t0));
        c.expire(t0);
        assert_eq!(c.floor(), 0);
        c.expire(t0 + GAP_PATIENCE);
        assert_eq!(c.floor(), 2, "1 was rolled back");
    }

    /// A replica that starts while number 95 is open applies it when it commits, and what it
    /// finds committed in its look-back is applied once, not twice.
    #[test]
    fn a_starting_replica_waits_for_what_was_open() {
        let t0 = Instant::now();
        let mut c = Watermark::starting_at(100, t0);
        assert_eq!(c.oldest_holes(), [(1, 100)]);
        for seq in (1..=100).filter(|&s| s != 95) {
            assert!(c.admit(seq, t0));
        }
        assert_eq!(c.oldest_holes(), [(95, 95)]);
        assert!(!c.admit(50, t0));
        assert!(c.admit(95, t0 + Duration::from_secs(3)));
        assert!(c.holes.is_empty());
        assert_eq!(c.floor(), 100);
    }

    /// However many changes arrive above a hole, the hole is still asked about, and a jump
    /// in the numbering is one range, not one entry per number.
    #[test]
    fn holes_are_ranges_and_survive_bursts() {
        let t0 = Instant::now();
        let mut c = Watermark::starting_at(10, t0);
        c.holes.clear();
        assert!(c.admit(12, t0));
        for seq in 13..50_000 {
            c.admit(seq, t0);
        }
        assert_eq!(c.oldest_holes(), [(11, 11)]);
        assert!(c.admit(1_000_000_000, t0));
        assert_eq!(c.oldest_holes(), [(11, 11), (50_000, 999_999_999)]);
        assert!(c.admit(11, t0));
        assert_eq!(c.floor(), 49_999);
    }
}
