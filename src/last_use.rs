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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct LastUse {
    store: Store,
    pending: Mutex<HashMap<TokenId, DateTime<Utc>>>,
    /// Serialises flushes so that a batch taken out of `pending` is written before the next.
    flushing: tokio::sync::Mutex<()>,
}

impl LastUse {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes that `id` was used at `at`, to the minute; keeps the newest.
    pub(crate) fn record(&self, id: &TokenId, at: DateTime<Utc>) {
        let at = to_minute(at);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(id) {
            Some(t) if *t >= at => {}
            Some(t) => *t = at,
            None => {
                pending.insert(id.clone(), at);
            }
        }
    }

    /// How many tokens have a use not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes every pending time. On failure the batch is put back (keeping newer times that
    /// arrived meanwhile) for the next attempt.
    pub(crate) async fn flush(&self) -> Result<u64, StoreError> {
        let _turn = self.flushing.lock().await;
        let batch: Vec<_> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                return Ok(0);
            }
            // take, not drain: release the map's memory after a burst of many tokens.
            std::mem::take(&mut *pending).into_iter().collect()
        };
        let start = std::time::Instant::now();
        let written = self.store.record_last_use(&batch).await;
        if let Some(m) = crate::metrics::get() {
            m.last_use_flush_seconds
                .record(start.elapsed().as_secs_f64());
        }
        match written {
            Ok(n) => Ok(n),
            Err(e) => {
                for (id, at) in &batch {
                    self.record(id, *at);
                }
                Err(e)
            }
        }
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

/// `t` truncated to the minute.
fn to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(chrono::TimeDelta::minutes(1)).unwrap_or(t)
}
