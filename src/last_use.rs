//! Write-behind of last-use times.
//!
//! Validation must not turn into a database write. Each use only records the newest time per
//! token in memory; a background task writes the batch every flush interval (and at
//! shutdown, and before a `List` on this replica, so listings here are up to date). A token used
//! a million times in one interval costs one row update. A crash loses at most one flush
//! interval of last-use times; nothing else is kept here.
//!
//! Stored times are kept to the minute (the hosted key services do the same): the status
//! window is days long, and grouping uses by minute lets one statement write the last use of
//! hundreds of tokens. `Validate` still answers with the exact time of the call.

use crate::background::Task;
use crate::domain::TokenId;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shards of the pending map: validations on different cores rarely wait for each other.
const SHARDS: usize = 16;

/// A token id as a fixed-size key (ids are 22 ASCII characters).
type Key = [u8; 22];

fn key(id: &TokenId) -> Key {
    let mut k = [0u8; 22];
    let b = id.as_str().as_bytes();
    let n = b.len().min(k.len());
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// Locks `m`; a panic elsewhere while it was held left nothing half-written worth refusing.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pending map's hasher: fast, and seeded per process.
type Hasher = foldhash::fast::RandomState;

/// Minutes since the Unix epoch.
type Minute = i64;

/// The minute `at` falls in: the precision of stored last-use times.
pub(crate) fn minute(at: DateTime<Utc>) -> Minute {
    at.timestamp().div_euclid(60)
}

#[derive(Debug)]
pub(crate) struct LastUse {
    store: Store,
    /// Newest minute of use per token, by shard.
    pending: [Mutex<HashMap<Key, Minute, Hasher>>; SHARDS],
    /// The tokens of the batch a flush has taken out of `pending` and is writing: a use
    /// there is still held here (see [`Self::is_pending`]) until the write has committed.
    writing: Mutex<HashSet<Key, Hasher>>,
    /// Serialises flushes so that a batch taken out of `pending` is written before the next.
    flushing: tokio::sync::Mutex<()>,
}

impl LastUse {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            pending: std::array::from_fn(|_| Mutex::default()),
            writing: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn shard(&self, k: &Key) -> &Mutex<HashMap<Key, Minute, Hasher>> {
        &self.pending[usize::from(k[0]) % SHARDS]
    }

    /// Notes that `id` was used at `at`, to the minute; keeps the newest.
    pub(crate) fn record(&self, id: &TokenId, at: DateTime<Utc>) {
        let k = key(id);
        let minute = minute(at);
        let mut pending = lock(self.shard(&k));
        let t = pending.entry(k).or_insert(minute);
        if *t < minute {
            *t = minute;
        }
    }

    /// Whether a use of `id` is held here, not yet written: pending, or in the batch a flush
    /// is writing. (Pending first: a flush moves a batch from `pending` to `writing` under
    /// the `writing` lock, so a use missed in the first is found in the second.)
    pub(crate) fn is_pending(&self, id: &TokenId) -> bool {
        let k = key(id);
        let pending = lock(self.shard(&k)).contains_key(&k);
        pending || lock(&self.writing).contains(&k)
    }

    /// How many tokens have a use not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.iter().map(|s| lock(s).len()).sum()
    }

    /// Takes every pending time out (releasing the maps' memory after a burst).
    fn take(&self) -> Vec<(TokenId, DateTime<Utc>)> {
        let mut batch = Vec::new();
        for shard in &self.pending {
            let taken = std::mem::take(&mut *lock(shard));
            batch.extend(taken.into_iter().filter_map(|(k, minute)| {
                let id = TokenId::parse(std::str::from_utf8(&k).ok()?).ok()?;
                Some((id, DateTime::from_timestamp(minute.checked_mul(60)?, 0)?))
            }));
        }
        batch
    }

    /// Takes the pending times out for writing; their tokens stay pending to
    /// [`Self::is_pending`] until [`Self::written`].
    fn take_for_writing(&self) -> Vec<(TokenId, DateTime<Utc>)> {
        let mut writing = lock(&self.writing);
        let batch = self.take();
        writing.extend(batch.iter().map(|(id, _)| key(id)));
        batch
    }

    /// The batch taken for writing is in the database, or back in `pending`.
    fn written(&self) {
        std::mem::take(&mut *lock(&self.writing));
    }

    /// Writes every pending time. On failure the batch is put back (keeping newer times that
    /// arrived meanwhile) for the next attempt.
    pub(crate) async fn flush(&self) -> Result<u64, StoreError> {
        let _turn = self.flushing.lock().await;
        let batch = self.take_for_writing();
        if batch.is_empty() {
            return Ok(0);
        }
        let start = std::time::Instant::now();
        let written = self.store.record_last_use(&batch).await;
        if let Some(m) = crate::metrics::get() {
            m.last_use_flush_seconds
                .record(start.elapsed().as_secs_f64());
        }
        if written.is_err() {
            for (id, at) in &batch {
                self.record(id, *at);
            }
        }
        self.written();
        written
    }
}

/// Starts writing pending times every `every` until the returned task is stopped; the
/// stop writes them one last time (after in-flight calls have drained).
pub(crate) fn start_flushing(last_use: Arc<LastUse>, every: Duration) -> Task {
    Task::spawn("last-use flusher", move |mut stop| async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = tick.tick() => {
                    if let Err(e) = last_use.flush().await {
                        tracing::warn!(error = %e, "last-use flush failed; will retry");
                    }
                }
            }
        }
        match last_use.flush().await {
            Ok(n) => tracing::info!(written = n, "last-use times flushed; stopped"),
            Err(e) => tracing::error!(error = %e, "could not flush last-use times at shutdown"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retirement sweeper asks `is_pending` while a flush may be writing: a use is held
    /// from its record until the flush that writes it is done, with no moment in between.
    #[tokio::test]
    async fn a_use_stays_pending_while_its_flush_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let lu = LastUse::new(Store::sqlite_in(dir.path()).await);
        let id = TokenId::parse(&"u".repeat(22)).unwrap();
        assert!(!lu.is_pending(&id));
        lu.record(&id, Utc::now());
        assert!(lu.is_pending(&id));
        let batch = lu.take_for_writing();
        assert_eq!(batch.len(), 1);
        assert_eq!(lu.pending(), 0, "out of the pending map");
        assert!(lu.is_pending(&id), "still held while it is written");
        lu.written();
        assert!(!lu.is_pending(&id));
        // A whole flush leaves nothing held (the row does not exist: nothing to update).
        lu.record(&id, Utc::now());
        lu.flush().await.unwrap();
        assert!(!lu.is_pending(&id));
    }

    #[tokio::test]
    async fn the_newest_minute_per_token_is_kept_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let lu = LastUse::new(Store::sqlite_in(dir.path()).await);
        let ids: Vec<TokenId> = (0..40)
            .map(|i| TokenId::parse(&format!("{i:0>22}")).unwrap())
            .collect();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let later = t0 + chrono::TimeDelta::seconds(61 + i as i64);
            lu.record(id, later);
            lu.record(id, t0); // older: ignored
            lu.record(id, later + chrono::TimeDelta::seconds(1)); // same minute or the next
        }
        assert_eq!(lu.pending(), ids.len());
        let mut batch = lu.take();
        batch.sort();
        assert_eq!(batch.len(), ids.len());
        for (i, (id, at)) in batch.iter().enumerate() {
            assert_eq!(id, &ids[i]);
            let expect = (t0 + chrono::TimeDelta::seconds(62 + i as i64)).timestamp() / 60 * 60;
            assert_eq!(at.timestamp(), expect, "to the minute, the newest");
        }
        assert_eq!(lu.pending(), 0);
    }
}
