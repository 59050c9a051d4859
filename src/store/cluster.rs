//! The database hosts behind one store, and which of them does what now.
//!
//! `--database-url` may name several PostgreSQL hosts (libpq's multi-host form) and
//! `--database-read-url` more; jeton keeps one pool per host and asks each, every
//! [`PROBE_EVERY`] (and at once when a query finds a host away), what it is:
//!
//! - **The primary** is the host of `--database-url` that is not in recovery (with two,
//!   after a failover whose old primary came back writable, the one on the newer timeline).
//!   Writes go there, and only there; with none, a write is `UNAVAILABLE` ("the database is
//!   failing over"). A promoted standby is found at the next probe: writes move to it
//!   within a fraction of a second of its accepting them.
//! - **A complete host** holds every acknowledged change: the primary, or — when no primary
//!   answers — a standby that the primary's last report named *synchronous* (its commits,
//!   with `synchronous_commit` at `on`, `remote_write` or `remote_apply`, are acknowledged
//!   only once that standby has them) and that has applied everything it received. Reads
//!   that must see every acknowledged change (the change-log follower, first validations)
//!   go to the complete host; so a replica keeps knowing every revocation while the primary
//!   is gone, and its cache stays trusted.
//!
//! A standby is known by the `application_name` it streams under, read from its own
//! `pg_stat_wal_receiver` while it streams (which needs jeton's database user to be a
//! superuser or a member of `pg_read_all_stats`, as `pg_monitor` is) and remembered after.
//! - **A read host** is a host of `--database-read-url` that streams, as a standby, on the
//!   primary's timeline. While there is a primary and a read host, reads go to the read host
//!   once it has applied everything the primary had written when the read began (see
//!   `Store::read`); so they see what a read on the primary would have seen.
//!
//! What this cannot see: a primary that changed its synchronous standby in the last probe
//! interval before it died (the new one would hold commits the old one lacks); and
//! asynchronous replication, where no standby is complete — a replica then serves only what
//! `--stale-if-error` allows.

use super::{Result, StoreError};
use crate::background::Task;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often every host is asked what it is.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long one host may take to answer a probe before it counts as away.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// One database host and its pool.
#[derive(Debug)]
pub(super) struct Host {
    /// `host:port`, for logs and errors (never a password).
    pub(super) label: String,
    pub(super) db: DatabaseConnection,
    /// Named by `--database-url`: jeton may write to it when it is the primary.
    pub(super) writable: bool,
}

/// Which host does what, as the last probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Roles {
    /// Where writes go.
    pub(crate) primary: Option<usize>,
    /// Where reads that must see every acknowledged change go.
    pub(crate) complete: Option<usize>,
    /// Counts the moves of `complete` from one host to another: a reader of the change log
    /// takes its position again on the new host (change numbers handed out by a primary
    /// that died may be handed out again by the one that follows it).
    pub(crate) epoch: u64,
    /// Whether any host answered the last probe.
    pub(crate) reachable: bool,
    /// A host of `--database-read-url` that streams from the primary now: where reads go
    /// when it has applied what they must see.
    pub(crate) reader: Option<usize>,
}

/// What one probe of one host found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Away,
    Primary {
        timeline: i64,
        /// The application names of the standbys its commits wait for.
        synchronous: Vec<String>,
    },
    Standby {
        /// Applied everything it received.
        caught_up: bool,
        /// The application name it streams under, when it streams now.
        name: Option<String>,
        /// The timeline it streams on, when it streams now.
        timeline: Option<i64>,
    },
}

#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) hosts: Vec<Host>,
    roles: watch::Sender<Roles>,
    /// Per host: the application name it was last seen streaming under.
    names: Mutex<Vec<Option<String>>>,
    /// The last primary's synchronous standbys, as it last reported them.
    synchronous: Mutex<Vec<String>>,
    /// Until when reads leave the read host alone, after it was found behind or away.
    reader_rests_until: Mutex<Option<std::time::Instant>>,
}

impl Cluster {
    /// One host that is always the primary and complete (SQLite, or a single PostgreSQL host
    /// before its first probe).
    pub(super) fn single(host: Host) -> Self {
        Self::new(
            vec![host],
            Roles {
                primary: Some(0),
                complete: Some(0),
                epoch: 0,
                reachable: true,
                reader: None,
            },
        )
    }

    pub(super) fn new(hosts: Vec<Host>, roles: Roles) -> Self {
        let n = hosts.len();
        Self {
            hosts,
            roles: watch::Sender::new(roles),
            names: Mutex::new(vec![None; n]),
            synchronous: Mutex::default(),
            reader_rests_until: Mutex::default(),
        }
    }

    pub(crate) fn roles(&self) -> Roles {
        *self.roles.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Roles> {
        self.roles.subscribe()
    }

    /// The primary, or why there is none.
    pub(super) fn primary(&self) -> Result<&Host> {
        self.roles()
            .primary
            .and_then(|i| self.hosts.get(i))
            .ok_or_else(|| self.failing_over())
    }

    /// A host that holds every acknowledged change, or why there is none.
    pub(super) fn complete(&self) -> Result<&Host> {
        self.roles()
            .complete
            .and_then(|i| self.hosts.get(i))
            .ok_or_else(|| self.failing_over())
    }

    /// The primary and the read host, while both answer and reads may use the read host.
    pub(super) fn primary_and_reader(&self) -> Option<(&Host, &Host)> {
        let roles = self.roles();
        let reader = self.hosts.get(roles.reader?)?;
        let primary = self.hosts.get(roles.primary?)?;
        let resting = self
            .reader_rests_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| std::time::Instant::now() < until);
        (!resting).then_some((primary, reader))
    }

    /// Leaves the read host alone for `rest`: it was found behind or away.
    pub(super) fn rest_reader(&self, rest: Duration) {
        *self
            .reader_rests_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now() + rest);
    }

    pub(super) fn failing_over(&self) -> StoreError {
        let hosts: Vec<&str> = self.hosts.iter().map(|h| h.label.as_str()).collect();
        StoreError::FailingOver(hosts.join(", "))
    }

    /// Asks every host what it is (at once, each bounded by [`PROBE_TIMEOUT`]) and updates
    /// the roles. Returns them.
    pub(super) async fn probe(&self) -> Roles {
        let seen = futures_util::future::join_all(self.hosts.iter().map(|h| async move {
            // A plain TCP connect first: a server that died answers it with a refusal at
            // once, where a pool would keep retrying until its acquire timeout.
            let reachable =
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&h.label)).await;
            if !matches!(reachable, Ok(Ok(_))) {
                return Seen::Away;
            }
            match tokio::time::timeout(PROBE_TIMEOUT, probe(&h.db)).await {
                Ok(Ok(seen)) => seen,
                _ => Seen::Away,
            }
        }))
        .await;
        self.decide(&seen)
    }

    fn decide(&self, seen: &[Seen]) -> Roles {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in seen.iter().enumerate() {
            if let Seen::Standby { name: Some(n), .. } = s {
                names[i] = Some(n.clone());
            }
        }
        // The writable host on the newest timeline; the first listed among equals.
        let primary = seen
            .iter()
            .enumerate()
            .filter(|(i, _)| self.hosts[*i].writable)
            .filter_map(|(i, s)| match s {
                Seen::Primary { timeline, .. } => Some((i, *timeline)),
                _ => None,
            })
            .fold(None, |best: Option<(usize, i64)>, (i, t)| match best {
                Some((_, bt)) if bt >= t => best,
                _ => Some((i, t)),
            })
            .map(|(i, _)| i);
        let mut synchronous = self.synchronous.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Seen::Primary { synchronous: s, .. }) = primary.map(|i| &seen[i]) {
            synchronous.clone_from(s);
        }
        let complete = primary.or_else(|| {
            seen.iter().enumerate().find_map(|(i, s)| match s {
                Seen::Standby {
                    caught_up: true, ..
                } if names[i].as_ref().is_some_and(|n| synchronous.contains(n)) => Some(i),
                _ => None,
            })
        });
        drop((names, synchronous));
        let reachable = seen.iter().any(|s| *s != Seen::Away);
        // A read host streams on the primary's timeline (a standby left behind on an older
        // one, or following another primary, would hold what the primary does not).
        let reader = primary.and_then(|p| {
            let Seen::Primary { timeline, .. } = &seen[p] else {
                return None;
            };
            seen.iter().enumerate().find_map(|(i, s)| match s {
                Seen::Standby {
                    timeline: Some(t), ..
                } if !self.hosts[i].writable && t == timeline => Some(i),
                _ => None,
            })
        });
        let mut now = Roles::default();
        self.roles.send_if_modified(|roles| {
            let epoch = if roles.complete != complete && complete.is_some() {
                roles.epoch + 1
            } else {
                roles.epoch
            };
            now = Roles {
                primary,
                complete,
                epoch,
                reachable,
                reader,
            };
            let changed = *roles != now;
            if changed {
                let label = |i: Option<usize>| i.map_or("none", |i| self.hosts[i].label.as_str());
                tracing::info!(
                    primary = label(primary),
                    complete = label(complete),
                    reads = label(reader.or(complete)),
                    "database hosts: roles changed"
                );
                *roles = now;
            }
            changed
        });
        now
    }

    /// Probes every [`PROBE_EVERY`], and at once when a query finds a host away, until the
    /// returned task is stopped.
    pub(super) fn start_probing(self: Arc<Self>) -> Task {
        Task::spawn("database hosts", move |mut stop| async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    () = super::trouble::next() => {}
                    _ = tick.tick() => {}
                }
                self.probe().await;
            }
        })
    }
}

/// A primary's timeline and what its commits wait for.
const PRIMARY_STATE: &str = "SELECT timeline_id::bigint AS timeline, \
     current_setting('synchronous_commit') AS commit, \
     current_setting('synchronous_standby_names') AS names FROM pg_control_checkpoint()";

/// What one host is now.
async fn probe(db: &DatabaseConnection) -> std::result::Result<Seen, sea_orm::DbErr> {
    let one = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    let row = db
        .query_one_raw(one("SELECT pg_is_in_recovery() AS standby, \
             current_setting('default_transaction_read_only') = 'on' AS read_only"))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no answer".into()))?;
    let standby: bool = row.try_get("", "standby")?;
    let read_only: bool = row.try_get("", "read_only")?;
    if !standby && read_only {
        // Out of recovery but taking no writes: a primary being demoted, or a standby just
        // promoted that is kept read-only until its old primary is fenced (pg_auto_failover
        // does so). Not a primary yet; it has applied all it has.
        return Ok(Seen::Standby {
            caught_up: true,
            name: None,
            timeline: None,
        });
    }
    if standby {
        // All it received is applied (with nothing received yet: not caught up).
        let row = db
            .query_one_raw(one(
                "SELECT COALESCE(pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), false) \
                 AS caught_up, r.conninfo, r.received_tli::bigint AS timeline \
                 FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r \
                 ON r.status = 'streaming'",
            ))
            .await?
            .ok_or_else(|| sea_orm::DbErr::Custom("no answer".into()))?;
        let caught_up: bool = row.try_get("", "caught_up")?;
        let conninfo: Option<String> = row.try_get("", "conninfo")?;
        let timeline: Option<i64> = row.try_get("", "timeline")?;
        return Ok(Seen::Standby {
            caught_up,
            name: conninfo.as_deref().and_then(application_name),
            timeline,
        });
    }
    let row = db
        .query_one_raw(one(PRIMARY_STATE))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no answer".into()))?;
    let timeline: i64 = row.try_get("", "timeline")?;
    let commit: String = row.try_get("", "commit")?;
    let names: String = row.try_get("", "names")?;
    let synchronous = if matches!(commit.as_str(), "on" | "remote_write" | "remote_apply") {
        let every_quorum_member = quorum_is_everyone(&names);
        db.query_all_raw(one(
            "SELECT application_name, sync_state FROM pg_stat_replication",
        ))
        .await?
        .iter()
        .filter_map(|r| {
            let name = r.try_get::<String>("", "application_name").ok()?;
            let state = r.try_get::<String>("", "sync_state").ok()?;
            (state == "sync" || (state == "quorum" && every_quorum_member)).then_some(name)
        })
        .collect()
    } else {
        Vec::new()
    };
    Ok(Seen::Primary {
        timeline,
        synchronous,
    })
}

/// Whether `synchronous_standby_names` asks, in quorum form (`ANY k (a, b, …)`), every
/// standby it lists to acknowledge each commit: only then does each of them hold every
/// acknowledged change (with `ANY 1 (a, b)`, one of the two does, and jeton cannot tell
/// which).
fn quorum_is_everyone(names: &str) -> bool {
    let names = names.trim();
    let Some(rest) = names
        .strip_prefix("ANY")
        .or_else(|| names.strip_prefix("any"))
    else {
        return false;
    };
    let Some((k, list)) = rest.trim().split_once('(') else {
        return false;
    };
    let Ok(k) = k.trim().parse::<usize>() else {
        return false;
    };
    let listed = list
        .trim_end_matches(')')
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .count();
    listed > 0 && k >= listed
}

/// The `application_name` of a libpq connection string (`key=value` pairs, values possibly
/// quoted).
fn application_name(conninfo: &str) -> Option<String> {
    conninfo.split_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "application_name").then(|| v.trim_matches('\'').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(writable: &[bool]) -> Cluster {
        let hosts = writable
            .iter()
            .enumerate()
            .map(|(i, &w)| Host {
                label: format!("h{i}:5432"),
                db: DatabaseConnection::default(),
                writable: w,
            })
            .collect();
        Cluster::new(hosts, Roles::default())
    }

    fn primary(timeline: i64, synchronous: &[&str]) -> Seen {
        Seen::Primary {
            timeline,
            synchronous: synchronous.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn standby(caught_up: bool, name: Option<&str>) -> Seen {
        Seen::Standby {
            caught_up,
            name: name.map(str::to_owned),
            timeline: name.map(|_| 1),
        }
    }

    fn streaming_on(timeline: i64) -> Seen {
        Seen::Standby {
            caught_up: true,
            name: Some("r".into()),
            timeline: Some(timeline),
        }
    }

    #[test]
    fn reads_go_to_a_read_host_that_streams_on_the_primarys_timeline() {
        let c = cluster(&[true, false]);
        let r = c.decide(&[primary(1, &[]), streaming_on(1)]);
        assert_eq!((r.primary, r.reader), (Some(0), Some(1)));
        assert!(c.primary_and_reader().is_some());
        c.rest_reader(Duration::from_secs(60));
        assert!(
            c.primary_and_reader().is_none(),
            "resting after it was behind"
        );
        // On an older timeline (it follows a primary that is gone): not a read host.
        let c = cluster(&[true, false]);
        assert_eq!(c.decide(&[primary(2, &[]), streaming_on(1)]).reader, None);
        // Not streaming, or no primary: none.
        assert_eq!(
            c.decide(&[primary(2, &[]), standby(true, None)]).reader,
            None
        );
        assert_eq!(c.decide(&[Seen::Away, streaming_on(2)]).reader, None);
        // A standby of --database-url is for failing over to, not a read host.
        let c = cluster(&[true, true]);
        assert_eq!(c.decide(&[primary(1, &[]), streaming_on(1)]).reader, None);
    }

    #[test]
    fn a_synchronous_standby_is_complete_once_the_primary_is_gone() {
        let c = cluster(&[true, true]);
        let r = c.decide(&[primary(1, &["s1"]), standby(true, Some("s1"))]);
        assert_eq!((r.primary, r.complete), (Some(0), Some(0)));
        // The primary dies: the standby it named synchronous, caught up, is complete (its
        // walreceiver no longer streams, so its name comes from memory).
        let r2 = c.decide(&[Seen::Away, standby(true, None)]);
        assert_eq!((r2.primary, r2.complete), (None, Some(1)));
        assert_eq!(r2.epoch, r.epoch + 1, "the follower re-anchors");
        // Not yet applied all it received: not complete.
        let c = cluster(&[true, true]);
        c.decide(&[primary(1, &["s1"]), standby(true, Some("s1"))]);
        assert_eq!(c.decide(&[Seen::Away, standby(false, None)]).complete, None);
        // Promoted: the primary.
        let r3 = c.decide(&[Seen::Away, primary(2, &[])]);
        assert_eq!((r3.primary, r3.complete), (Some(1), Some(1)));
    }

    #[test]
    fn an_asynchronous_standby_is_never_complete() {
        let c = cluster(&[true, true]);
        c.decide(&[primary(1, &[]), standby(true, Some("s1"))]);
        assert_eq!(c.decide(&[Seen::Away, standby(true, None)]).complete, None);
        // Nor one the primary did not name.
        let c = cluster(&[true, true]);
        c.decide(&[primary(1, &["other"]), standby(true, Some("s1"))]);
        assert_eq!(c.decide(&[Seen::Away, standby(true, None)]).complete, None);
    }

    #[test]
    fn two_primaries_the_newer_timeline_wins_and_read_hosts_are_never_written() {
        let c = cluster(&[true, true]);
        let r = c.decide(&[primary(1, &[]), primary(2, &[])]);
        assert_eq!(r.primary, Some(1));
        let c = cluster(&[true, false]);
        let r = c.decide(&[Seen::Away, primary(3, &[])]);
        assert_eq!(
            r.primary, None,
            "a --database-read-url host is not written to"
        );
    }

    #[test]
    fn a_quorum_holds_everything_only_when_it_is_everyone() {
        assert!(quorum_is_everyone("ANY 1 (pgautofailover_standby_2)"));
        assert!(quorum_is_everyone("ANY 2 (a, b)"));
        assert!(!quorum_is_everyone("ANY 1 (a, b)"));
        assert!(
            !quorum_is_everyone("FIRST 1 (a, b)"),
            "priority: its synchronous one is 'sync'"
        );
        assert!(!quorum_is_everyone("standby1"));
        assert!(!quorum_is_everyone(""));
    }

    #[test]
    fn application_names_in_connection_strings() {
        assert_eq!(
            application_name(
                "user=postgres host=127.0.0.1 port=5 application_name=standby1 sslmode=prefer"
            ),
            Some("standby1".into())
        );
        assert_eq!(application_name("host=x"), None);
    }
}
