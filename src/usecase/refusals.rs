//! Refused uses of known tokens, for the audit trail: a token whose id exists, presented and
//! refused — revoked, expired, a wrong secret, the wrong namespace, an address it may not be
//! used from — through any door (`Validate`, the proxies' doors, a bearer call to jeton).
//!
//! A refusal is only noted on the call's path (a bounded queue; nothing on the path of a
//! valid answer); a background round every second counts what was noted by tenant, token
//! and reason, confirms unknown ids against the database (at most [`LOOKUPS_PER_ROUND`] a
//! round: an id that does not exist gives no event, so a stranger cannot write to the
//! trail), and adds the counts to the database, where replicas together write at most one
//! `AUDIT_ACTION_TOKEN_REFUSED` event per token and reason a [`WINDOW`], standing for every
//! refusal since the last.

use super::Core;
use crate::background::Task;
use crate::domain::{AuditAction, AuditEvent, Reason, Spelled, TIME_ACTOR, TenantId, TokenId};
use crate::store::{RefusalKey, RefusalTally};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// At most one event per token and reason in this long.
pub(crate) const WINDOW: TimeDelta = TimeDelta::minutes(1);
/// Refusals noted and not yet counted; beyond, they are dropped (and counted in a metric).
const QUEUE: usize = 4096;
/// How often the reporter runs when nothing wakes it (for the sweep).
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Least time between two rounds: a refusal after a quiet spell is reported at once, a flood
/// in rounds at most this often.
const ROUND_GAP: Duration = Duration::from_millis(50);
/// Most ids of unknown tenant looked up in the database per round.
const LOOKUPS_PER_ROUND: usize = 256;
/// Rounds between two sweeps for refusals whose minute ended with no new refusal.
const SWEEP_EVERY_ROUNDS: u32 = 5;

/// Whether refusals for `reason` are recorded: those that say something about who holds
/// the token (not a scope or role the caller's request lacks).
pub(crate) fn recorded(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::NotFound
            | Reason::Revoked
            | Reason::Expired
            | Reason::WrongNamespace
            | Reason::AddressNotAllowed
    )
}

/// One refusal as noted on a call's path.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) token: TokenId,
    /// The token's tenant when the replica knows it; `None`: look it up (and drop the
    /// refusal if no such token exists).
    pub(crate) tenant: Option<TenantId>,
    pub(crate) reason: Reason,
    pub(crate) client: Option<IpAddr>,
}

/// The queue between the calls that note refusals and the round that reports them.
pub(crate) struct Refusals {
    tx: mpsc::Sender<Refused>,
    rx: Mutex<Option<mpsc::Receiver<Refused>>>,
    /// Wakes the reporter when a refusal is noted.
    wake: tokio::sync::Notify,
}

impl Default for Refusals {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl Refusals {
    /// Notes a refusal, if its reason is one that is recorded. Never waits.
    pub(crate) fn note(&self, refused: Refused) {
        if !recorded(refused.reason) {
            return;
        }
        if self.tx.try_send(refused).is_err() {
            if let Some(m) = crate::metrics::get() {
                m.refusals_dropped.increment(1);
            }
            return;
        }
        self.wake.notify_one();
    }

    /// Starts reporting what is noted, every [`REPORT_EVERY`], until the task is stopped
    /// (and once more then). Only the first call starts anything.
    pub(crate) fn start_reporting(core: Arc<Core>) -> Option<Task> {
        let mut rx = core
            .refusals
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(Task::spawn(
            "refusal reporter",
            move |mut stop| async move {
                let mut tick = tokio::time::interval(REPORT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last_sweep = std::time::Instant::now();
                let mut last_round = std::time::Instant::now();
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop => break,
                        () = core.refusals.wake.notified() => {}
                        _ = tick.tick() => {}
                    }
                    let since = last_round.elapsed();
                    if since < ROUND_GAP {
                        tokio::time::sleep(ROUND_GAP - since).await;
                    }
                    last_round = std::time::Instant::now();
                    let sweep = last_sweep.elapsed() >= REPORT_EVERY * SWEEP_EVERY_ROUNDS;
                    if sweep {
                        last_sweep = std::time::Instant::now();
                    }
                    report(&core, &mut rx, sweep).await;
                }
                report(&core, &mut rx, false).await;
            },
        ))
    }
}

/// One round: counts what was noted, confirms unknown ids, adds the counts to the database
/// (which writes an event where one is due) and, when `sweep`, reports the refusals whose
/// minute ended with no new one.
async fn report(core: &Core, rx: &mut mpsc::Receiver<Refused>, sweep: bool) {
    let mut tallies: HashMap<RefusalKey, RefusalTally> = HashMap::new();
    let mut unresolved: HashMap<TokenId, Vec<(Reason, Option<IpAddr>)>> = HashMap::new();
    let add = |tallies: &mut HashMap<RefusalKey, RefusalTally>,
               key: RefusalKey,
               client: Option<IpAddr>| {
        let t = tallies.entry(key).or_insert(RefusalTally {
            count: 0,
            client: String::new(),
        });
        t.count += 1;
        if let Some(c) = client {
            t.client = c.to_string();
        }
    };
    while let Ok(r) = rx.try_recv() {
        match r.tenant {
            Some(tenant) => add(
                &mut tallies,
                RefusalKey {
                    tenant,
                    token: r.token,
                    reason: r.reason,
                },
                r.client,
            ),
            None => {
                if unresolved.len() < LOOKUPS_PER_ROUND || unresolved.contains_key(&r.token) {
                    unresolved
                        .entry(r.token)
                        .or_default()
                        .push((r.reason, r.client));
                } else if let Some(m) = crate::metrics::get() {
                    m.refusals_dropped.increment(1);
                }
            }
        }
    }
    for (id, seen) in unresolved {
        match core.store.token(&id).await {
            Ok(Some(token)) => {
                for (reason, client) in seen {
                    let key = RefusalKey {
                        tenant: token.tenant.clone(),
                        token: id.clone(),
                        reason,
                    };
                    add(&mut tallies, key, client);
                }
            }
            // No such token: a stranger's string, not an event.
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "could not look up a refused token"),
        }
    }
    let now = core.now();
    for (key, tally) in tallies {
        let written = core
            .store
            .add_refusals(&key, &tally, now, WINDOW, |t| event(&key, t, now))
            .await;
        reported(core, written);
    }
    if sweep {
        match core.store.unreported_refusals(now - WINDOW, 100).await {
            Ok(keys) => {
                for key in keys {
                    let written = core
                        .store
                        .report_refusals(&key, now, now - WINDOW, |t| event(&key, t, now))
                        .await;
                    reported(core, written);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not look for unreported refusals"),
        }
    }
}

fn reported(core: &Core, written: crate::store::Result<Option<AuditEvent>>) {
    match written {
        Ok(Some(e)) => {
            tracing::info!(tenant = %e.tenant, target = %e.target, detail = %e.detail, "refused uses of a token recorded");
            core.audit_appended.notify_waiters();
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::chain(&e), "could not record refused uses of a token");
        }
    }
}

/// The event for the refusals `tally` of `key`.
fn event(key: &RefusalKey, tally: &RefusalTally, now: DateTime<Utc>) -> AuditEvent {
    let cause = if key.reason == Reason::NotFound {
        " cause=wrong_secret"
    } else {
        ""
    };
    let client = if tally.client.is_empty() {
        "unknown"
    } else {
        tally.client.as_str()
    };
    let mut e = AuditEvent::new(
        &key.tenant,
        now,
        TIME_ACTOR,
        AuditAction::TokenRefused,
        key.token.as_str(),
        format!(
            "reason={}{cause} count={} client={client}",
            key.reason.proto_name(),
            tally.count
        ),
    );
    e.outcome = "failure".to_owned();
    e
}
