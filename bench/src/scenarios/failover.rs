//! Through a database failover (issue 18): `Validate` on two replicas while the PostgreSQL
//! primary is killed and its synchronous standby promoted a second later, as
//! tests/api/failover.rs does, but timed: Validate calls and errors per 100 ms, latency
//! before, during and after, and how long writes (`Revoke`) are away.
//!
//! The database is testkit's [`PgPair`] (a primary and a standby of its own, on ports of
//! their own; never `--pg-url`); both `jeton serve` processes get its multi-host URL.

use super::{Ctx, flags};
use crate::load::{self, Expect, Lat};
use crate::metrics::Counters;
use crate::plot::{self, Line, Mark};
use crate::report::table;
use crate::server::{AdminClient, Server, admin_client};
use chrono::{DateTime, Utc};
use jeton::domain::TokenString;
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use jeton_testkit::pgpair::{PgPair, Replication};
use plotters::style::RGBColor;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::Channel;

/// Good tokens validated once on both replicas before the load, so cached on both.
const CACHED: usize = 200;
/// Closed-loop callers per replica, sharing one connection.
const CALLERS: usize = 4;
/// Every n-th call of a caller presents the revoked token.
const REVOKED_EVERY: usize = 10;
/// On each replica, the first validation of a token nobody validated before, this often.
const COLD_EVERY: Duration = Duration::from_millis(25);
/// A `Revoke` on each replica this often, on schedule (a late answer delays no other).
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Calls before the recorded run, on the same connections.
const WARMUP: Duration = Duration::from_millis(500);
/// The recorded run before the kill.
const STEADY: Duration = Duration::from_secs(5);
/// From the kill to the promote: stands for the failure detection of an operator or of a
/// failover manager.
const DETECTION: Duration = Duration::from_secs(1);
/// The phase right after the promote.
const RECOVERY: Duration = Duration::from_secs(2);
/// From the promote to the end.
const AFTER: Duration = Duration::from_secs(8);
/// The plot's (and the fewest-calls column's) time step.
const BIN: Duration = Duration::from_millis(100);
/// Where the plot goes.
const PLOT: &str = "docs/failover.svg";
const REPLICAS: [&str; 2] = ["A", "B"];

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let spinner = ctx
        .progress
        .spinner("starting a PostgreSQL primary and its synchronous standby");
    let pair = PgPair::start(Replication::Synchronous).await?;
    spinner.finish();
    let url = pair.multi_host_url();
    let admin = ctx.bootstrap(&url)?;
    let per_replica = per_replica();
    let mut cold = ctx
        .seed(&pair.primary_url(), 2 * per_replica, true, 0)
        .await?;
    let cold = [cold.split_off(per_replica), cold];
    let mut doomed = ctx
        .seed(&pair.primary_url(), 2 * per_replica, false, 0)
        .await?;
    let doomed = [doomed.split_off(per_replica), doomed].map(|tokens| {
        tokens
            .iter()
            .filter_map(|t| Some(TokenString::parse(t)?.id().as_str().to_owned()))
            .collect::<Vec<_>>()
    });
    let args = flags(&[
        ("--max-tokens-per-owner", "100000".into()),
        ("--last-use-flush-interval", "1h".into()),
    ]);
    let replicas = [ctx.serve(&url, true, &args)?, ctx.serve(&url, true, &args)?];
    let channels = [replicas[0].channel().await?, replicas[1].channel().await?];
    let mut made = generate(ctx, &channels[0], &admin, CACHED + 1).await?;
    let revoked: Arc<str> = made.pop().ok_or("nothing generated")?.into();
    let cached = Arc::new(made);
    let bar = ctx.progress.counter(
        2 * CACHED as u64,
        "caching the good tokens on both replicas",
    );
    for server in &replicas {
        load::validate_each(server, &cached, 16, Expect::Valid, &bar).await?;
    }
    bar.finish();
    revoke(&channels, &admin, &revoked).await?;

    let spinner = ctx.progress.spinner(format!(
        "load; kill after {:.1} s, promote {:.0} s later, {:.0} s more",
        (WARMUP + STEADY).as_secs_f64(),
        DETECTION.as_secs_f64(),
        AFTER.as_secs_f64()
    ));
    let seen = Arc::new(Seen::default());
    let stop = StopOnDrop(seen.clone());
    let mut callers = Vec::new();
    for (r, channel) in channels.iter().enumerate() {
        for slot in 0..CALLERS {
            callers.push(caller(
                r,
                channel.clone(),
                cached.clone(),
                revoked.clone(),
                r * CALLERS + slot,
                seen.clone(),
            ));
        }
    }
    for (r, (channel, tokens)) in channels.iter().zip(cold).enumerate() {
        callers.push(cold_caller(r, channel.clone(), tokens, seen.clone()));
    }
    let mut writers = Vec::new();
    for (r, (channel, ids)) in channels.iter().zip(doomed).enumerate() {
        let client = admin_client(channel.clone(), &admin)?;
        writers.push(writer(r, client, ids, seen.clone()));
    }
    // The servers' cache counters at each phase's start, and at the end.
    let counters = || replicas.each_ref().map(Server::counters);
    tokio::time::sleep(WARMUP).await;
    let base = Instant::now();
    let mut at_phases = vec![counters()];
    tokio::time::sleep(STEADY).await;
    at_phases.push(counters());
    let kill = Instant::now();
    let kill_wall = Utc::now();
    pair.kill_primary().await?;
    let killed = Instant::now();
    tokio::time::sleep_until((kill + DETECTION).into()).await;
    let promote = Instant::now();
    pair.promote_standby().await?;
    let promoted = Instant::now();
    at_phases.push(counters());
    tokio::time::sleep(RECOVERY).await;
    let settled = Instant::now();
    at_phases.push(counters());
    tokio::time::sleep_until((promoted + AFTER).into()).await;
    at_phases.push(counters());
    drop(stop);
    let end = Instant::now();
    let mut calls = Vec::new();
    for task in callers {
        calls.extend(task.await?);
    }
    let mut writes = Vec::new();
    for task in writers {
        writes.extend(task.await?);
    }
    spinner.finish();
    let logs: Vec<String> = replicas.iter().map(Server::log).collect();
    for server in replicas {
        server.stop()?;
    }
    drop(pair);

    let t = Timeline {
        base,
        kill,
        killed,
        promote,
        promoted,
        settled,
        end,
    };
    let seen = std::mem::take(&mut *seen.odd.lock().unwrap_or_else(|e| e.into_inner()));
    let events: Vec<Vec<(f64, String)>> = logs.iter().map(|l| events(l, kill_wall)).collect();
    for (name, log) in REPLICAS.iter().zip(&logs) {
        for (n, line) in log_digest(log).into_iter().filter(|(_, l)| is_warning(l)) {
            ctx.progress
                .println(&format!("      {name} logged {n} ×: {line}"));
        }
    }
    let warnings: Vec<usize> = logs
        .iter()
        .map(|l| l.lines().filter(|l| is_warning(l)).count())
        .collect();
    let plotted = draw(ctx, &t, &calls, &writes)?;
    let report = Report {
        t: &t,
        calls: &calls,
        writes: &writes,
        odd: &seen,
        events: &events,
        counters: &at_phases,
        warnings: &warnings,
        cold: per_replica,
        plotted,
    };
    ctx.progress.println(&report.summary());
    Ok(report.render(ctx))
}

/// Tokens each replica validates for the first time, and revokes: enough for the whole run.
fn per_replica() -> usize {
    let run = WARMUP + STEADY + DETECTION + AFTER + Duration::from_secs(2);
    (run.as_secs_f64() / COLD_EVERY.min(WRITE_EVERY).as_secs_f64()).ceil() as usize
}

/// `n` tokens made by `Generate` on `channel` (at the server's Argon2 cost), a few calls at
/// a time.
async fn generate(
    ctx: &Ctx,
    channel: &Channel,
    admin: &str,
    n: usize,
) -> Result<Vec<String>, BoxError> {
    let bar = ctx
        .progress
        .counter(n as u64, "generating the tokens to validate");
    let client = admin_client(channel.clone(), admin)?;
    let mut tasks = JoinSet::new();
    for slot in 0..4 {
        let (mut client, bar) = (client.clone(), bar.clone());
        tasks.spawn(async move {
            let mut made = Vec::new();
            for i in (slot..n).step_by(4) {
                let r = client
                    .generate(proto::GenerateRequest {
                        name: format!("failover-{i}"),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("Generate failed: {e}"))?;
                made.push(r.into_inner().secret);
                bar.inc(1);
            }
            Ok::<_, String>(made)
        });
    }
    let mut all = Vec::with_capacity(n);
    for made in tasks.join_all().await {
        all.extend(made?);
    }
    bar.finish();
    Ok(all)
}

/// Validates `revoked` on both replicas (so that both cache it as valid), revokes it
/// through A, and waits until both answer `REASON_REVOKED` (the change log's propagation is
/// measured elsewhere; here it must be over before the load starts).
async fn revoke(channels: &[Channel; 2], admin: &str, revoked: &str) -> Result<(), BoxError> {
    for channel in channels {
        let r = load::validate(&mut TokenServiceClient::new(channel.clone()), revoked).await?;
        if !r.valid {
            return Err(format!("token to revoke not valid before ({:?})", r.reason()).into());
        }
    }
    let id = TokenString::parse(revoked)
        .ok_or("a generated token does not parse")?
        .id();
    admin_client(channels[0].clone(), admin)?
        .revoke(proto::RevokeRequest {
            id: id.as_str().to_owned(),
        })
        .await?;
    let since = Instant::now();
    for channel in channels {
        let mut client = TokenServiceClient::new(channel.clone());
        while load::validate(&mut client, revoked).await?.reason() != proto::Reason::Revoked {
            if since.elapsed() > Duration::from_secs(10) {
                return Err("the revocation was not seen on both replicas within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// What a Validate call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Valid for a good token, `REASON_REVOKED` for the revoked one.
    Right,
    /// A gRPC error.
    Error,
    /// A good token refused, or the revoked one refused for another reason.
    Wrong,
    /// The revoked token answered valid: an acknowledged revocation undone.
    Revived,
}

/// One Validate call.
struct Call {
    replica: usize,
    end: Instant,
    ns: u64,
    /// The token's first validation on that replica (a database read), not a cached one.
    cold: bool,
    answer: Answer,
}

/// One write (`Revoke`).
struct Write {
    replica: usize,
    sent: Instant,
    end: Instant,
    ok: bool,
}

/// Shared by the load's tasks: when to stop, and every answer that was not right, by kind
/// (count and the first message).
#[derive(Default)]
struct Seen {
    stop: AtomicBool,
    odd: Mutex<BTreeMap<String, (usize, String)>>,
}

impl Seen {
    fn note(&self, kind: String, message: String) {
        let mut odd = self.odd.lock().unwrap_or_else(|e| e.into_inner());
        odd.entry(kind).or_insert((0, message)).0 += 1;
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Stops the load when dropped, also when the scenario fails half-way.
struct StopOnDrop(Arc<Seen>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn validate_timed(
    client: &mut TokenServiceClient<Channel>,
    token: &str,
    revoked: bool,
    what: &str,
    seen: &Seen,
) -> (Instant, u64, Answer) {
    let sent = Instant::now();
    let r = client
        .validate(proto::ValidateRequest {
            token: token.to_owned(),
            ..Default::default()
        })
        .await;
    let end = Instant::now();
    let answer = match r {
        Ok(v) => {
            let v = v.into_inner();
            match (revoked, v.valid) {
                (false, true) => Answer::Right,
                (true, false) if v.reason() == proto::Reason::Revoked => Answer::Right,
                (true, true) => {
                    seen.note(
                        format!("{what}: the revoked token answered **valid**"),
                        String::new(),
                    );
                    Answer::Revived
                }
                _ => {
                    seen.note(
                        format!("{what}: answered valid={} {:?}", v.valid, v.reason()),
                        String::new(),
                    );
                    Answer::Wrong
                }
            }
        }
        Err(s) => {
            seen.note(format!("{what}: {:?}", s.code()), s.message().to_owned());
            Answer::Error
        }
    };
    (end, nanos(end - sent), answer)
}

/// A closed-loop caller: the cached tokens round-robin, every [`REVOKED_EVERY`]-th call the
/// revoked token, until stopped.
fn caller(
    replica: usize,
    channel: Channel,
    cached: Arc<Vec<String>>,
    revoked: Arc<str>,
    slot: usize,
    seen: Arc<Seen>,
) -> JoinHandle<Vec<Call>> {
    tokio::spawn(async move {
        let mut client = TokenServiceClient::new(channel);
        let what = format!("Validate on {}", REPLICAS[replica]);
        let mut calls = Vec::with_capacity(1 << 16);
        let mut i = slot * 7919;
        while !seen.stopped() {
            i += 1;
            let is_revoked = i.is_multiple_of(REVOKED_EVERY);
            let token = if is_revoked {
                &revoked
            } else {
                cached[i % cached.len()].as_str()
            };
            let (end, ns, answer) =
                validate_timed(&mut client, token, is_revoked, &what, &seen).await;
            calls.push(Call {
                replica,
                end,
                ns,
                cold: false,
                answer,
            });
        }
        calls
    })
}

/// One first validation every [`COLD_EVERY`], each of a token not validated before.
fn cold_caller(
    replica: usize,
    channel: Channel,
    tokens: Vec<String>,
    seen: Arc<Seen>,
) -> JoinHandle<Vec<Call>> {
    tokio::spawn(async move {
        let mut client = TokenServiceClient::new(channel);
        let mut tick = tokio::time::interval(COLD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let what = format!("first Validate on {}", REPLICAS[replica]);
        let mut calls = Vec::with_capacity(tokens.len());
        for token in &tokens {
            tick.tick().await;
            if seen.stopped() {
                break;
            }
            let (end, ns, answer) = validate_timed(&mut client, token, false, &what, &seen).await;
            calls.push(Call {
                replica,
                end,
                ns,
                cold: true,
                answer,
            });
        }
        calls
    })
}

/// A `Revoke` of the next of `ids` every [`WRITE_EVERY`] on replica `replica`, each in a
/// task of its own.
fn writer(
    replica: usize,
    client: AdminClient,
    ids: Vec<String>,
    seen: Arc<Seen>,
) -> JoinHandle<Vec<Write>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inflight = JoinSet::new();
        for id in ids {
            tick.tick().await;
            if seen.stopped() {
                break;
            }
            let (mut client, seen) = (client.clone(), seen.clone());
            inflight.spawn(async move {
                let sent = Instant::now();
                let r = client.revoke(proto::RevokeRequest { id }).await;
                let end = Instant::now();
                if let Err(s) = &r {
                    seen.note(
                        format!("Revoke on {}: {:?}", REPLICAS[replica], s.code()),
                        s.message().to_owned(),
                    );
                }
                Write {
                    replica,
                    sent,
                    end,
                    ok: r.is_ok(),
                }
            });
        }
        inflight.join_all().await
    })
}

/// The moments of the run.
struct Timeline {
    /// The end of the warm-up: the recorded run starts.
    base: Instant,
    /// SIGKILL sent.
    kill: Instant,
    /// The primary's processes gone.
    killed: Instant,
    /// `pg_ctl promote` started.
    promote: Instant,
    /// The standby takes writes (`pg_is_in_recovery()` false).
    promoted: Instant,
    /// [`RECOVERY`] after that.
    settled: Instant,
    /// The load told to stop.
    end: Instant,
}

impl Timeline {
    /// Seconds from the kill (negative before it).
    fn at(&self, t: Instant) -> f64 {
        secs_between(self.kill, t)
    }

    /// The phases of the table: name, start, end.
    fn phases(&self) -> [(&'static str, Instant, Instant); 4] {
        [
            ("before the kill", self.base, self.kill),
            ("kill → promote", self.kill, self.promoted),
            ("promote → +2 s", self.promoted, self.settled),
            ("after (+2 s → end)", self.settled, self.end),
        ]
    }

    /// The whole 100-ms bins of the recorded run, aligned on the kill: bin `k` runs from
    /// `k` × 100 ms to `k + 1` × 100 ms after it.
    fn bins(&self) -> std::ops::Range<i64> {
        let step = BIN.as_secs_f64();
        let first = (self.at(self.base) / step).ceil() as i64;
        let last = (self.at(self.end) / step).floor() as i64;
        first..last
    }
}

/// `to - from` in seconds, negative when `to` is earlier.
fn secs_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64()
    } else {
        -(from - to).as_secs_f64()
    }
}

/// The 100-ms bin of a moment `at` seconds from the kill.
fn bin_of(at: f64) -> i64 {
    (at / BIN.as_secs_f64()).floor() as i64
}

/// Counts per bin of `t.bins()`, of the moments `at` (seconds from the kill).
fn per_bin(t: &Timeline, moments: impl Iterator<Item = f64>) -> BTreeMap<i64, usize> {
    let bins = t.bins();
    let mut counts: BTreeMap<i64, usize> = bins.clone().map(|b| (b, 0)).collect();
    for at in moments {
        let b = bin_of(at);
        if bins.contains(&b) {
            *counts.entry(b).or_default() += 1;
        }
    }
    counts
}

/// What a replica logged about the database during the run, as (seconds from the kill,
/// text): roles, the change-log follower, readiness.
fn events(log: &str, kill: DateTime<Utc>) -> Vec<(f64, String)> {
    const TOLD: [&str; 6] = [
        "roles changed",
        "change log",
        "the database does not answer",
        "the database answers again",
        "database unavailable",
        "--stale-if-error",
    ];
    log.lines()
        .filter_map(|l| {
            let message = json_field(l, "message")?;
            if !TOLD.iter().any(|t| message.contains(t)) {
                return None;
            }
            let at = DateTime::parse_from_rfc3339(json_field(l, "timestamp")?).ok()?;
            let secs = (at.with_timezone(&Utc) - kill).num_microseconds()? as f64 / 1e6;
            let detail = match (json_field(l, "primary"), json_field(l, "complete")) {
                (Some(p), Some(c)) => format!(" (primary {p}, complete {c})"),
                _ => json_field(l, "error").map_or(String::new(), |e| format!(" ({e})")),
            };
            (secs > -1.0).then(|| (secs, format!("{message}{detail}")))
        })
        .collect()
}

/// The string value of `"name":"…"` in a JSON log line (jeton logs JSON when its stderr is
/// not a terminal).
fn json_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let rest = &line[line.find(&key)? + key.len()..];
    Some(&rest[..rest.find('"')?])
}

/// A server's log, one line per message (its first occurrence, with the count), in order.
fn log_digest(log: &str) -> Vec<(usize, &str)> {
    let mut seen: Vec<(&str, usize, &str)> = Vec::new();
    for line in log.lines() {
        let message = json_field(line, "message").unwrap_or(line);
        match seen.iter_mut().find(|(m, ..)| *m == message) {
            Some((_, n, _)) => *n += 1,
            None => seen.push((message, 1, line)),
        }
    }
    seen.into_iter().map(|(_, n, line)| (n, line)).collect()
}

fn is_warning(line: &str) -> bool {
    line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")
}

/// Writes the plot; returns its link.
fn draw(
    ctx: &Ctx,
    t: &Timeline,
    calls: &[Call],
    writes: &[Write],
) -> Result<Option<String>, BoxError> {
    let Some((path, link)) = ctx.file_target(Path::new(PLOT)) else {
        return Ok(None);
    };
    let step = BIN.as_secs_f64();
    let points = |counts: BTreeMap<i64, usize>| -> Vec<(f64, f64)> {
        counts
            .into_iter()
            .map(|(b, n)| ((b as f64 + 0.5) * step, n as f64))
            .collect()
    };
    let on = |r: usize| {
        points(per_bin(
            t,
            calls.iter().filter(|c| c.replica == r).map(|c| t.at(c.end)),
        ))
    };
    let failed = points(per_bin(
        t,
        calls
            .iter()
            .filter(|c| c.answer != Answer::Right)
            .map(|c| t.at(c.end)),
    ));
    let writes_ok = points(per_bin(
        t,
        writes.iter().filter(|w| w.ok).map(|w| t.at(w.end)),
    ));
    let writes_failed = points(per_bin(
        t,
        writes.iter().filter(|w| !w.ok).map(|w| t.at(w.end)),
    ));
    plot::timeline(
        &path,
        "Through a failover: calls per 100 ms on replicas A and B",
        "seconds from the kill",
        (
            "Validate calls per 100 ms",
            &[
                Line {
                    name: "Validate calls on A",
                    points: on(0),
                    color: RGBColor(31, 119, 180),
                },
                Line {
                    name: "Validate calls on B",
                    points: on(1),
                    color: RGBColor(23, 190, 207),
                },
            ],
        ),
        (
            "per 100 ms",
            &[
                Line {
                    name: "Validate errors and wrong answers",
                    points: failed,
                    color: RGBColor(214, 39, 40),
                },
                Line {
                    name: "Revoke succeeded",
                    points: writes_ok,
                    color: RGBColor(44, 160, 44),
                },
                Line {
                    name: "Revoke failed",
                    points: writes_failed,
                    color: RGBColor(255, 127, 14),
                },
            ],
        ),
        &[
            Mark {
                name: "kill -9 of the primary",
                x: 0.0,
                color: RGBColor(0, 0, 0),
            },
            Mark {
                name: "standby promoted (takes writes)",
                x: t.at(t.promoted),
                color: RGBColor(148, 103, 189),
            },
        ],
    )?;
    Ok(Some(link))
}

/// The figures of one run, and their markdown.
struct Report<'a> {
    t: &'a Timeline,
    calls: &'a [Call],
    writes: &'a [Write],
    odd: &'a BTreeMap<String, (usize, String)>,
    events: &'a [Vec<(f64, String)>],
    /// Both servers' counters at the start of each phase, and at the end.
    counters: &'a [[Option<Counters>; 2]],
    warnings: &'a [usize],
    cold: usize,
    plotted: Option<String>,
}

/// When writes came back on one replica.
struct Resumed {
    /// The first successful write sent once the primary was gone: when it answered.
    first_ok: Option<Instant>,
    /// Writes that succeeded before the promote started (with no primary: must be none).
    ok_without_primary: usize,
    /// Writes sent after `first_ok` that failed.
    failed_after: usize,
    /// Writes sent once the primary was gone that failed.
    failed: usize,
    /// From when on every write sent succeeded within [`PROMPT`]: the sending of the first
    /// of them (`None`: not even the last one did).
    prompt_from: Option<Instant>,
}

/// A write that takes longer than this is not "working again" yet: the target for
/// writes after a promote.
const PROMPT: Duration = Duration::from_secs(1);

impl Report<'_> {
    fn recorded(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| c.end >= self.t.base)
    }

    fn resumed(&self, replica: usize) -> Resumed {
        let t = self.t;
        let mine = || {
            self.writes
                .iter()
                .filter(move |w| w.replica == replica && w.sent >= t.killed)
        };
        let first_ok = mine().filter(|w| w.ok).map(|w| w.end).min();
        let mut by_sending: Vec<&Write> = mine().collect();
        by_sending.sort_by_key(|w| w.sent);
        let prompt_from = by_sending
            .iter()
            .rev()
            .take_while(|w| w.ok && w.end - w.sent <= PROMPT)
            .last()
            .map(|w| w.sent);
        Resumed {
            prompt_from,
            first_ok,
            ok_without_primary: mine().filter(|w| w.ok && w.end < t.promote).count(),
            failed_after: mine()
                .filter(|w| !w.ok && first_ok.is_some_and(|f| w.sent > f))
                .count(),
            failed: mine().filter(|w| !w.ok).count(),
        }
    }

    /// Validates that were not right, of the whole recorded run.
    fn failed(&self) -> usize {
        self.recorded()
            .filter(|c| c.answer != Answer::Right)
            .count()
    }

    fn revived(&self) -> usize {
        self.recorded()
            .filter(|c| c.answer == Answer::Revived)
            .count()
    }

    /// A line for the terminal.
    fn summary(&self) -> String {
        let t = self.t;
        let back: Vec<String> = (0..2)
            .map(|r| {
                let w = self.resumed(r);
                let at = |i: Option<Instant>| {
                    i.map_or("never".to_owned(), |i| {
                        format!("{:.3} s", secs_between(t.promote, i))
                    })
                };
                format!(
                    "{} first {}, all within {} s from {}",
                    REPLICAS[r],
                    at(w.first_ok),
                    PROMPT.as_secs(),
                    at(w.prompt_from)
                )
            })
            .collect();
        format!(
            "      {} Validates recorded, {} not right ({} revoked-token valid); writes \
             after `pg_ctl promote`: {}",
            self.recorded().count(),
            self.failed(),
            self.revived(),
            back.join(", ")
        )
    }

    fn phase_rows(&self) -> Vec<Vec<String>> {
        let t = self.t;
        let step = BIN.as_secs_f64();
        let bins = per_bin(t, self.recorded().map(|c| t.at(c.end)));
        t.phases()
            .iter()
            .enumerate()
            .map(|(i, &(name, from, to))| {
                let inside = |c: &&Call| c.end >= from && c.end < to;
                let warm: Vec<&Call> = self.recorded().filter(|c| !c.cold).filter(inside).collect();
                let cold: Vec<&Call> = self.recorded().filter(|c| c.cold).filter(inside).collect();
                let all = || warm.iter().chain(&cold);
                let count = |a: Answer| all().filter(|c| c.answer == a).count();
                let span = secs_between(from, to);
                let lat = Lat::new(warm.iter().map(|c| c.ns).collect());
                let (lo, hi) = (t.at(from), t.at(to));
                let fewest = bins
                    .iter()
                    .filter(|&(&b, _)| {
                        b as f64 * step >= lo - 1e-9 && (b + 1) as f64 * step <= hi + 1e-9
                    })
                    .map(|(_, &n)| n)
                    .min();
                let wrong = count(Answer::Wrong) + count(Answer::Revived);
                let revived = count(Answer::Revived);
                let cache = self.cache(i);
                let rate = |r: usize| {
                    let n = warm.iter().filter(|c| c.replica == r).count();
                    format!("{:.0}", n as f64 / span.max(1e-9))
                };
                vec![
                    name.to_owned(),
                    format!("{span:.2}"),
                    format!("{} · {}", rate(0), rate(1)),
                    fewest.map_or("–".into(), |n| n.to_string()),
                    bold_unless_zero(count(Answer::Error)),
                    if revived > 0 {
                        format!("**{wrong} ({revived} revoked token valid)**")
                    } else {
                        bold_unless_zero(wrong)
                    },
                    format!("{} / {} / {:.3}", lat.ms(0.5), lat.ms(0.99), lat.max_ms()),
                    format!(
                        "{} ({} not right)",
                        cold.len(),
                        cold.iter().filter(|c| c.answer != Answer::Right).count()
                    ),
                    cache.0,
                    cache.1,
                ]
            })
            .collect()
    }

    /// From the servers' counters over phase `i`: the share of cache lookups that hit, and
    /// the Argon2 computations, each as "A · B".
    fn cache(&self, i: usize) -> (String, String) {
        let over = |r: usize| Some(self.counters[i + 1][r]?.since(&self.counters[i][r]?));
        let hits = |r: usize| match over(r) {
            None => "n/a".to_owned(),
            Some(c) => c
                .hit_rate()
                .map_or("–".to_owned(), |h| format!("{:.1} %", 100.0 * h)),
        };
        let argon2 = |r: usize| over(r).map_or("n/a".to_owned(), |c| format!("{:.0}", c.argon2));
        (
            format!("{} · {}", hits(0), hits(1)),
            format!("{} · {}", argon2(0), argon2(1)),
        )
    }

    /// Validates answered per 100 ms, one row per second from a second before the kill,
    /// with those not right in parentheses.
    fn bins_table(&self) -> String {
        let t = self.t;
        let all = per_bin(t, self.recorded().map(|c| t.at(c.end)));
        let bad = per_bin(
            t,
            self.recorded()
                .filter(|c| c.answer != Answer::Right)
                .map(|c| t.at(c.end)),
        );
        let per_second = (1.0 / BIN.as_secs_f64()).round() as i64;
        let (Some(&first), Some(&last)) = (all.keys().next(), all.keys().next_back()) else {
            return String::new();
        };
        let promote = t.at(t.promoted);
        let rows: Vec<Vec<String>> = (first.max(-per_second).div_euclid(per_second)
            ..=last.div_euclid(per_second))
            .map(|second| {
                let mut row = vec![format!("{second:+}")];
                for b in second * per_second..(second + 1) * per_second {
                    row.push(match (all.get(&b), bad.get(&b)) {
                        (Some(n), Some(&e)) if e > 0 => format!("{n} (**{e}**)"),
                        (Some(n), _) => n.to_string(),
                        (None, _) => "–".into(),
                    });
                }
                let mut events = Vec::new();
                if second == 0 {
                    events.push("kill at +0.00".to_owned());
                }
                if promote.floor() as i64 == second {
                    events.push(format!("promote at {promote:+.2}"));
                }
                row.push(events.join(", "));
                row
            })
            .collect();
        let mut header = vec!["second from the kill".to_owned()];
        header.extend((0..per_second).map(|i| format!("+{:.1}", i as f64 * BIN.as_secs_f64())));
        header.push(String::new());
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        table(&header, &rows)
    }

    /// The writes of each phase, by when they were sent.
    fn write_rows(&self) -> Vec<Vec<String>> {
        self.t
            .phases()
            .iter()
            .map(|&(name, from, to)| {
                let sent: Vec<&Write> = self
                    .writes
                    .iter()
                    .filter(|w| w.sent >= from && w.sent < to)
                    .collect();
                let per = |r: usize, ok: bool| {
                    sent.iter().filter(|w| w.replica == r && w.ok == ok).count()
                };
                let ok = Lat::new(
                    sent.iter()
                        .filter(|w| w.ok)
                        .map(|w| nanos(w.end - w.sent))
                        .collect(),
                );
                vec![
                    name.to_owned(),
                    format!("{} · {}", per(0, true), per(1, true)),
                    format!("{} · {}", per(0, false), per(1, false)),
                    format!("{} / {} / {:.3}", ok.ms(0.5), ok.ms(0.99), ok.max_ms()),
                ]
            })
            .collect()
    }

    fn writes_text(&self) -> String {
        let t = self.t;
        let mut lines = Vec::new();
        for (r, name) in REPLICAS.iter().enumerate() {
            let w = self.resumed(r);
            let mut line = match w.first_ok {
                Some(f) => format!(
                    "- on {name}: the first successful `Revoke` sent once the primary was gone \
                     answered **{:.3} s after `pg_ctl promote` started** ({:+.3} s from the \
                     standby found taking writes, {:.3} s after the kill); {} `Revoke`s sent \
                     once the primary was gone failed",
                    secs_between(t.promote, f),
                    secs_between(t.promoted, f),
                    secs_between(t.kill, f),
                    w.failed,
                ),
                None => format!(
                    "- on {name}: **writes never came back** ({} `Revoke`s sent once the \
                     primary was gone failed)",
                    w.failed
                ),
            };
            if w.failed_after > 0 {
                line.push_str(&format!(
                    ", **{} of them after that first success**",
                    w.failed_after
                ));
            }
            match w.prompt_from {
                Some(from) => line.push_str(&format!(
                    "; every `Revoke` sent from **{:.3} s after `pg_ctl promote` started** on \
                     succeeded within {} s",
                    secs_between(t.promote, from),
                    PROMPT.as_secs()
                )),
                None => line.push_str(&format!(
                    "; **not even the last `Revoke` succeeded within {} s**",
                    PROMPT.as_secs()
                )),
            }
            if w.ok_without_primary > 0 {
                line.push_str(&format!(
                    "; **{} succeeded before the promote started, with no primary**",
                    w.ok_without_primary
                ));
            }
            line.push('.');
            lines.push(line);
        }
        lines.join("\n")
    }

    fn events_text(&self) -> String {
        let mut s = String::new();
        for (name, events) in REPLICAS.iter().zip(self.events) {
            s.push_str(&format!("- {name}:"));
            if events.is_empty() {
                s.push_str(" nothing\n");
            } else {
                s.push('\n');
            }
            for (at, what) in events {
                s.push_str(&format!("  - {at:+.3} s: {what}\n"));
            }
        }
        s
    }

    fn render(&self, ctx: &Ctx) -> String {
        let t = self.t;
        let pinned = if ctx.pinning.server_core().is_some() {
            "Both replicas are pinned to the server core; the PostgreSQL pair, started by \
             this process, runs on the load generator's core"
        } else {
            "Nothing is pinned"
        };
        let odd = if self.odd.is_empty() {
            "Every call answered right and every write succeeded outside the failover: \
             nothing to list."
                .to_owned()
        } else {
            let mut s = String::from("What was not right, over the whole run:\n\n");
            for (kind, (n, first)) in self.odd {
                s.push_str(&format!("- {kind}: {n}"));
                if !first.is_empty() {
                    s.push_str(&format!(" (first: \"{first}\")"));
                }
                s.push('\n');
            }
            s
        };
        let failed = self.failed();
        let revived = self.revived();
        let verdict = if revived > 0 {
            format!(
                "**{failed} failed `Validate`s over the run, and the revoked token answered \
                 valid {revived} times: an acknowledged revocation was undone.**"
            )
        } else if failed > 0 {
            format!("**{failed} failed `Validate`s over the run** (errors and wrong answers).")
        } else {
            "**0 failed `Validate`s** over the run, cached or first validations, on either \
             replica; the revoked token never answered valid."
                .to_owned()
        };
        let plot = self
            .plotted
            .as_deref()
            .map(|link| {
                format!(
                    "\n![Validate calls per 100 ms on each replica, with Validate failures and \
                     Revoke outcomes per 100 ms, through a kill and a promote]({link})\n"
                )
            })
            .unwrap_or_default();
        format!(
            "## Through a database failover\n\n\
             A PostgreSQL primary and its synchronous standby (testkit's `PgPair`: \
             `synchronous_standby_names` naming the standby, `synchronous_commit = on`; \
             servers of its own on ports of their own, not `--pg-url`), and two `jeton serve` \
             replicas, A and B, given both hosts in one multi-host `--database-url`; jeton asks \
             each host every 200 ms what it is. {pinned}. The replicas run at the production \
             Argon2 cost, with `--max-tokens-per-owner 100000` and \
             `--last-use-flush-interval 1h`; the cache keeps its default time to live (60 s, \
             longer than the run).\n\n\
             Tokens: {CACHED} made by `Generate` (production Argon2 cost) and validated once on \
             each replica beforehand, so that both have them cached; one more revoked through A \
             before the load (the revocation acknowledged, and seen by both replicas); {} per \
             replica that nobody has validated; and {} per replica to revoke during the run \
             (these two sets seeded straight into the database, with Argon2 m=8 KiB). Load, \
             all through the run, on each replica: {CALLERS} closed-loop callers on one \
             connection validating the cached tokens round-robin, every {REVOKED_EVERY}th call \
             presenting the revoked token; a first validation of a fresh token every {} ms (a \
             database read, from the host jeton trusts to hold every acknowledged change: the \
             standby once the primary is gone); and a `Revoke` every {} ms (the write), sent on \
             schedule whether or not the previous one has answered. A right answer is valid \
             for a good token and `REASON_REVOKED` for the revoked one; an error or any other \
             answer counts as failed, and the revoked token answering valid would be the worst \
             failure.\n\n\
             Timeline: {:.1} s of unrecorded warm-up, {:.0} s steady, then SIGKILL to the \
             primary's postmaster and all its processes at once (gone after {:.0} ms); {:.0} s \
             after the kill, standing for the failure detection of an operator or a failover \
             manager, `pg_ctl promote` of the standby, which took {:.0} ms until \
             `pg_is_in_recovery()` was false there (\"promote\" in the table); then {:.0} s \
             more. Times are of each call's answer; latencies are of the cached-token calls. \
             The last two columns come from each server's counters: the share of token cache \
             lookups that hit (`jeton_cache_lookups_total`; a replica that has not read the \
             change log within its trust window, 1 s, uses no entry, and a first validation \
             is a miss too), and Argon2 computations (`jeton_argon2_computations_total`).\n\n\
             {}\n{verdict}\n\n\
             `Validate`s answered per 100 ms on both replicas together, from a second before \
             the kill (those not right, if any, in parentheses):\n\n{}\n\
             Writes (`Revoke`), by when they were sent, and from the promote until they work \
             again:\n\n{}\n{}\n\n\
             What each replica logged about the database, in seconds from the kill \
             (\"complete\" is the host that reads which must see every acknowledged change go \
             to):\n\n{}\n\
             {odd}\n\
             Warnings and errors logged by the replicas: A {}, B {}.\n{plot}",
            self.cold,
            self.cold,
            COLD_EVERY.as_millis(),
            WRITE_EVERY.as_millis(),
            WARMUP.as_secs_f64(),
            STEADY.as_secs_f64(),
            secs_between(t.kill, t.killed) * 1e3,
            DETECTION.as_secs_f64(),
            secs_between(t.promote, t.promoted) * 1e3,
            AFTER.as_secs_f64(),
            table(
                &[
                    "phase",
                    "seconds",
                    "cached Validate calls/s, A · B",
                    "fewest Validates in 100 ms",
                    "errors",
                    "wrong answers",
                    "p50 / p99 / max ms",
                    "first validations (not right)",
                    "cache hits, A · B",
                    "Argon2, A · B",
                ],
                &self.phase_rows()
            ),
            self.bins_table(),
            table(
                &[
                    "sent",
                    "succeeded, A · B",
                    "failed, A · B",
                    "latency of those that succeeded, p50 / p99 / max ms",
                ],
                &self.write_rows()
            ),
            self.writes_text(),
            self.events_text(),
            self.warnings[0],
            self.warnings[1],
        )
    }
}

fn bold_unless_zero(n: usize) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("**{n}**")
    }
}
