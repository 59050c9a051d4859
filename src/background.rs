//! Background tasks that belong to a component and stop with the server: the change-log
//! follower (validation), the last-use flusher and the activation sweeper. Each owner
//! starts its task and hands back a [`Task`]; the server stops them in order at shutdown
//! (a task finishes the round it is in, bounded by a timeout). A task dropped without
//! [`Task::stop`] is aborted, so none outlives the server that started it.

use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    pub(crate) fn every<F, Fut>(name: &'static str, period: Duration, mut round: F) -> Self
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
                    _ = tick.tick() => round().await,
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
