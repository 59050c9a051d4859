//! Whether this replica can serve: its database answers with jeton's schema, and it is not
//! shutting down. A cheap check runs every second (bounded by a timeout, so a blackholed
//! connection counts as a failure instead of hanging it), and at once whenever a real query
//! finds the database away. Two failed checks in a row — or one right after a query failed —
//! make the replica not ready; one good check makes it ready again. The gRPC health service
//! (and the metrics) follow this state.

use crate::background::Task;
use crate::store::{Store, trouble};
use std::time::Duration;
use tokio::sync::watch;

/// What the replica can do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The database answers: serve.
    Serving,
    /// The database is away or has no schema: calls that need it answer UNAVAILABLE.
    DatabaseAway,
    /// A shutdown signal came: finishing what is in flight.
    ShuttingDown,
}

/// How often the database is checked.
const EVERY: Duration = Duration::from_secs(1);
/// How long one check may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    state: watch::Sender<State>,
}

impl Readiness {
    /// Starts ready: the database was just opened and migrated.
    pub(crate) fn new() -> Self {
        Self {
            state: watch::Sender::new(State::Serving),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    pub(crate) fn is_serving(&self) -> bool {
        *self.state.borrow() == State::Serving
    }

    /// From now on, not ready, whatever the database does.
    pub(crate) fn shut_down(&self) {
        self.state.send_replace(State::ShuttingDown);
    }

    fn set(&self, to: State) {
        self.state.send_if_modified(|s| {
            let change = *s != to && *s != State::ShuttingDown;
            if change {
                *s = to;
            }
            change
        });
    }

    /// Starts checking the database until the returned task is stopped.
    pub(crate) fn start_checking(&self, store: Store) -> Task {
        let me = self.clone();
        Task::spawn("database check", move |mut stop| async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failures = 0u32;
            loop {
                let woken_by_query = tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    () = trouble::next() => true,
                    _ = tick.tick() => false,
                };
                let outcome = match tokio::time::timeout(TIMEOUT, store.check()).await {
                    Ok(r) => r.map_err(|e| crate::telemetry::chain(&e)),
                    Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
                };
                match outcome {
                    Ok(()) => {
                        if failures > 0 && !me.is_serving() {
                            tracing::info!("the database answers again: serving");
                        }
                        failures = 0;
                        me.set(State::Serving);
                    }
                    Err(cause) => {
                        failures += 1;
                        if (failures >= 2 || woken_by_query) && me.is_serving() {
                            tracing::error!(%cause, "the database does not answer (or has no jeton schema): health NOT_SERVING until it does");
                            me.set(State::DatabaseAway);
                        }
                    }
                }
            }
        })
    }
}
