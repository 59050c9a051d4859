//! Background tasks that belong to a component and stop with the server: the change-log
//! follower (validation), the last-use flusher and the activation sweeper. Each owner
//! starts its task and hands back a [`Task`]; the server stops them in order at shutdown
//! (a task finishes the round it is in, bounded by a timeout). A task dropped without
//! [`Task::stop`] is aborted, so none outlives the server that started it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How many rounds a periodic task has completed, for whoever must see one go by — a test
/// that checks that a sweep changed nothing waits for the next complete round, not for a
/// fixed time.
#[derive(Debug, Clone)]
pub struct Rounds(Arc<watch::Sender<u64>>);

impl Default for Rounds {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Rounds {
    /// Rounds completed so far.
    pub fn completed(&self) -> u64 {
        *self.0.borrow()
    }

    /// Resolves once a round that began after this call has completed (two completions:
    /// the one in progress now may have started before). Never resolves if the task stops.
    pub fn one_more(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.0.subscribe();
        let target = *rx.borrow_and_update() + 2;
        async move {
            let _ = rx.wait_for(|n| *n >= target).await;
        }
    }

    fn done(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// Resolves when the task is asked to stop.
pub(crate) type Stop = oneshot::Receiver<()>;

/// How long [`Task::stop`] waits for a round in progress before aborting it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Task {
    name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Task {
    /// Runs `body` until it returns; `body` watches its [`Stop`] to end early.
    pub(crate) fn spawn<F, Fut>(name: &'static str, body: F) -> Self
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Self {
            name,
            stop: Some(tx),
            handle: Some(tokio::spawn(body(rx))),
        }
    }

    /// Runs `round` every `period` (the first at once) until stopped. A round in progress
    /// when the stop comes is finished, not cut.
    pub(crate) fn every<F, Fut>(name: &'static str, period: Duration, round: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::every_counted(name, period, Rounds::default(), round)
    }

    /// As [`Task::every`], counting each completed round in `rounds`.
    pub(crate) fn every_counted<F, Fut>(
        name: &'static str,
        period: Duration,
        rounds: Rounds,
        mut round: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::spawn(name, move |mut stop| async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    _ = tick.tick() => {
                        round().await;
                        rounds.done();
                    }
                }
            }
        })
    }

    /// Asks the task to stop and waits for it (at most a few seconds, then aborts it).
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut handle) = self.handle.take() {
            match tokio::time::timeout(STOP_TIMEOUT, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(task = self.name, error = %e, "background task failed")
                }
                Err(_) => {
                    tracing::warn!(
                        task = self.name,
                        "background task did not stop in time; aborted"
                    );
                    handle.abort();
                }
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
