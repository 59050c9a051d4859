//! Cached `Validate` and the empty RPC below saturation: an open-loop load at fixed fractions
//! of the empty RPC's maximum calls/s (the best of the closed-loop rows of the same run),
//! each call timed from when it was due. The closed-loop table reads latency where queueing
//! dominates it; this one reads it where a deployment sized with headroom runs.

use super::{Medians, Row};
use crate::load::{self, Call, Load, Paced, PacedWindow, Window};
use crate::report::{median, table};
use crate::scenarios::Ctx;
use crate::server::Server;
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::time::Duration;

/// Offered rates, as fractions of the empty RPC's maximum: 10 % is far from any queue, 75 %
/// is close to Validate's own maximum (about 0.8 of the empty RPC's in the closed loop).
const FRACTIONS: [f64; 4] = [0.1, 0.25, 0.5, 0.75];
/// Connections the calls are spread over, round-robin (as the closed-loop rows at 4).
const CONNS: usize = 4;
/// The closed-loop row quoted beside the open-loop ones: the saturated reading of the p99
/// target in docs/performance.md.
const SATURATED: (usize, usize) = (4, 64);
const WARMUP: Duration = Duration::from_millis(500);

/// The windows of one fraction.
struct Level {
    fraction: f64,
    rate: f64,
    validate: Vec<PacedWindow>,
    empty: Vec<PacedWindow>,
    /// Closed-loop windows of the empty RPC at the maximum's setting, one per repeat before
    /// the open-loop pair: the maximum again, as the machine was during this fraction.
    check: Vec<Window>,
}

/// Measures every fraction on `server` (the closed-loop table's, with `tokens` cached), from
/// the empty RPC's maximum over `rows`; returns the section.
pub(super) async fn run(
    ctx: &Ctx,
    server: &Server,
    tokens: &Arc<Vec<String>>,
    rows: &[Row],
) -> Result<String, BoxError> {
    let (best, max) = rows
        .iter()
        .map(|r| (r, Medians::of(&r.empty).per_sec))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("no closed-loop row to take the empty RPC's maximum from")?;
    if max <= 0.0 {
        return Err("the empty RPC's closed-loop rows answered nothing".into());
    }
    let repeats = ctx.args.repeats;
    let window = Duration::from_secs(ctx.args.seconds);
    let bar = ctx.progress.counter(
        (FRACTIONS.len() * repeats as usize * 3) as u64,
        "open loop: Validate / empty RPC windows",
    );
    let mut levels = Vec::new();
    for fraction in FRACTIONS {
        let rate = (fraction * max).round();
        let mut level = Level {
            fraction,
            rate,
            validate: Vec::new(),
            empty: Vec::new(),
            check: Vec::new(),
        };
        for r in 0..repeats {
            bar.set_message(format!(
                "open loop {:.0} %: the maximum again {}/{repeats}",
                fraction * 100.0,
                r + 1
            ));
            let check = Load {
                call: Call::Empty,
                tokens,
                conns: best.conns,
                inflight: best.inflight,
                warmup: WARMUP,
                window,
            };
            level.check.push(load::run(server, &check).await?);
            bar.inc(1);
            let order = if r % 2 == 0 {
                [Call::Validate, Call::Empty]
            } else {
                [Call::Empty, Call::Validate]
            };
            for call in order {
                bar.set_message(format!(
                    "open loop {:.0} % ({rate:.0}/s): {call} {}/{repeats}",
                    fraction * 100.0,
                    r + 1
                ));
                let load = Paced {
                    call,
                    tokens,
                    conns: CONNS,
                    rate,
                    warmup: WARMUP,
                    window,
                };
                let w = load::paced(server, &load).await?;
                if call == Call::Empty {
                    level.empty.push(w);
                } else {
                    level.validate.push(w);
                }
                bar.inc(1);
            }
        }
        ctx.progress.println(&format!("      {}", summary(&level)));
        levels.push(level);
    }
    bar.finish();
    let saturated = rows
        .iter()
        .find(|r| (r.conns, r.inflight) == SATURATED)
        .ok_or("the closed-loop table has no row to compare with")?;
    Ok(render(ctx, &levels, (best, max), rows, saturated))
}

/// Medians over the open-loop windows of one call.
struct PacedMedians {
    per_sec: f64,
    /// Half the range of answered calls/s over the windows, relative to the median.
    spread: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    late_p99_us: f64,
    most_in_flight: usize,
    cpu_us: f64,
    /// The load generator's CPU, as a share of its core.
    generator_busy: f64,
}

impl PacedMedians {
    fn of(windows: &[PacedWindow]) -> Self {
        let m = |f: &dyn Fn(&PacedWindow) -> f64| median(windows.iter().map(f).collect());
        let rates: Vec<f64> = windows.iter().map(PacedWindow::per_sec).collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let per_sec = median(rates);
        Self {
            per_sec,
            spread: if per_sec > 0.0 {
                (hi - lo) / 2.0 / per_sec
            } else {
                0.0
            },
            p50: m(&|w| w.lat.q_ms(0.5)),
            p99: m(&|w| w.lat.q_ms(0.99)),
            p999: m(&|w| w.lat.q_ms(0.999)),
            late_p99_us: m(&|w| w.late.q_ms(0.99) * 1e3),
            most_in_flight: windows.iter().map(|w| w.most_in_flight).max().unwrap_or(0),
            cpu_us: m(&|w| w.cpu_us_per_call()),
            generator_busy: m(&|w| w.own_busy()),
        }
    }
}

/// The three percentiles, and Validate's minus the empty RPC's.
fn percentiles(p: [f64; 3]) -> String {
    format!("{:.3} / {:.3} / {:.3}", p[0], p[1], p[2])
}

fn differences(v: [f64; 3], e: [f64; 3]) -> String {
    format!(
        "{:+.3} / **{:+.3}** / {:+.3}",
        v[0] - e[0],
        v[1] - e[1],
        v[2] - e[2]
    )
}

fn summary(level: &Level) -> String {
    let (v, e) = (
        PacedMedians::of(&level.validate),
        PacedMedians::of(&level.empty),
    );
    let again = Medians::of(&level.check).per_sec;
    format!(
        "{:.0} % ({:.0}/s offered, maximum again {again:.0}/s): Validate {:.0}/s p99 {:.3} ms, empty {:.0}/s p99 {:.3} ms \
         (server CPU {:.1} / {:.1} µs per call, sends late p99 {:.0} / {:.0} µs, most in flight \
         {} / {}, load generator busy {:.2} / {:.2} of its core)",
        level.fraction * 100.0,
        level.rate,
        v.per_sec,
        v.p99,
        e.per_sec,
        e.p99,
        v.cpu_us,
        e.cpu_us,
        v.late_p99_us,
        e.late_p99_us,
        v.most_in_flight,
        e.most_in_flight,
        v.generator_busy,
        e.generator_busy
    )
}

fn cells(level: &Level) -> Vec<String> {
    let (v, e) = (
        PacedMedians::of(&level.validate),
        PacedMedians::of(&level.empty),
    );
    let (vp, ep) = ([v.p50, v.p99, v.p999], [e.p50, e.p99, e.p999]);
    let again = Medians::of(&level.check);
    vec![
        format!("{:.0} %", level.fraction * 100.0),
        format!("{:.0}", level.rate),
        format!(
            "{} ({:.0} %)",
            again.rate(),
            level.rate / again.per_sec.max(f64::MIN_POSITIVE) * 100.0
        ),
        format!("{:.0} ±{:.0}%", v.per_sec, v.spread * 100.0),
        percentiles(vp),
        format!("{:.0} ±{:.0}%", e.per_sec, e.spread * 100.0),
        percentiles(ep),
        differences(vp, ep),
        format!("{:.1} / {:.1}", v.cpu_us, e.cpu_us),
        format!("{:.0} / {:.0}", v.late_p99_us, e.late_p99_us),
        format!("{:.2} / {:.2}", v.generator_busy, e.generator_busy),
        format!("{} / {}", v.most_in_flight, e.most_in_flight),
    ]
}

/// The closed-loop row at [`SATURATED`], in the same columns.
fn saturated_cells(row: &Row) -> Vec<String> {
    let (v, e) = (Medians::of(&row.validate), Medians::of(&row.empty));
    let (vp, ep) = ([v.p50, v.p99, v.p999], [e.p50, e.p99, e.p999]);
    vec![
        format!(
            "saturated: closed loop, {} connections × {} in flight",
            row.conns, row.inflight
        ),
        "as answered".into(),
        "–".into(),
        v.rate(),
        percentiles(vp),
        e.rate(),
        percentiles(ep),
        differences(vp, ep),
        format!("{:.1} / {:.1}", v.cpu_us, e.cpu_us),
        "–".into(),
        "–".into(),
        format!("{0} / {0}", row.inflight),
    ]
}

fn render(
    ctx: &Ctx,
    levels: &[Level],
    (best, max): (&Row, f64),
    rows: &[Row],
    saturated: &Row,
) -> String {
    let a = &ctx.args;
    let closed: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} × {}: {:.0}",
                r.conns,
                r.inflight,
                Medians::of(&r.empty).per_sec
            )
        })
        .collect();
    let header = [
        "offered: fraction of the empty RPC's maximum",
        "offered calls/s",
        "the maximum again, beside these windows: calls/s (offered / it)",
        "Validate answered calls/s",
        "Validate p50 / p99 / p999 ms",
        "empty answered calls/s",
        "empty p50 / p99 / p999 ms",
        "Validate − empty: p50 / p99 / p999 ms",
        "server CPU µs per call: Validate / empty",
        "sends late, p99 µs: Validate / empty",
        "load generator's core busy: Validate / empty",
        "most in flight: Validate / empty",
    ];
    let mut body: Vec<Vec<String>> = levels.iter().map(cells).collect();
    body.push(saturated_cells(saturated));
    let mut s = format!(
        "## Cached `Validate` below saturation: an open-loop load\n\n\
         The server, flags and {} cached tokens of the closed-loop table (\"Cached `Validate` \
         against an empty RPC\"), measured right after its windows; each Validate presents the \
         next token, round-robin. The empty RPC's maximum is the highest median calls/s of its \
         closed-loop rows in that table of the same run: **{max:.0} calls/s**, at {} × {} \
         (connections × in flight: calls/s — {}).\n\n\
         Each fraction of that maximum is offered as a constant rate over {CONNS} connections, \
         calls assigned to them in turn: call *k* is due *k* / rate seconds after the start and \
         is sent when it is due, whether or not earlier calls have been answered, with as many \
         in flight as that takes (up to {}, beyond which a call waits for an answer before it \
         is sent; the table shows the most any window reached). Each call's latency is counted \
         **from when it was due**, not from when it was sent, so a stall of the server or of \
         the load generator delays every call due meanwhile, and all of them count (no \
         coordinated omission). Tokio's timer ticks in milliseconds, coarser than the gaps \
         between calls, so the sending task waits on a kernel timer (a `timerfd` in tokio's \
         reactor) set to each due time, and sends every call already due when it wakes. Two \
         columns say whether a row measured the server or the load generator: \"sends late\", \
         how long after its due time a call was handed to its connection (the p99 of each \
         window; median), the load generator's own share of the latency, its core taken by \
         other processes included; and the share of its core the load generator used (user + \
         system of this process from `/proc` over the window; median). Server CPU per call is \
         as in the closed-loop table, per call due within the window.\n\n\
         What the server can do on a shared machine changes in minutes, so the maximum is \
         measured again beside each fraction's windows: before each Validate / empty pair, one \
         closed-loop window of the empty RPC at {} × {}, as in the table; the column \"the \
         maximum again\" is their median, and the share of it the offered rate was.\n\n\
         Each fraction is {} window(s) of {} s of each call, Validate and empty alternating and \
         the first of the pair swapped on each repeat (V E, E V, …); each window opens its own \
         connections and starts after {} ms of unrecorded calls at the same rate. The table \
         shows the median window: answered calls/s (answers received within the window, ± half \
         the range over the windows), the median of each percentile, and Validate's minus the \
         empty RPC's. The last row is the closed-loop row at {} × {} of the same run, at \
         saturation, for comparison.\n\n",
        a.tokens,
        best.conns,
        best.inflight,
        closed.join(", "),
        load::MOST_IN_FLIGHT,
        best.conns,
        best.inflight,
        a.repeats,
        a.seconds,
        WARMUP.as_millis(),
        SATURATED.0,
        SATURATED.1,
    );
    s.push_str(&table(&header, &body));
    s
}
