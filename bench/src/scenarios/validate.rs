//! Cached `Validate` against an empty RPC on the same server, at 1 and 4 connections and 16,
//! 64 and 256 calls in flight: medians of alternating windows, server CPU per call, and the
//! cache's own account of the Validate windows (hit rate, Argon2 computations). Then, on the
//! same server, the proxy adapters beside Validate, and both calls below saturation
//! ([`open_loop`]).

mod open_loop;

use super::{Ctx, flags};
use crate::load::{self, Call, Expect, Lat, Load, Window};
use crate::metrics::Counters;
use crate::plot;
use crate::report::{median, table};
use crate::server::Server;
use indicatif::ProgressBar;
use jeton_testkit::BoxError;
use plotters::style::RGBColor;
use std::sync::Arc;
use std::time::Duration;

const CONNS: [usize; 2] = [1, 4];
const INFLIGHT: [usize; 3] = [16, 64, 256];
/// The row drawn in the plot.
const PLOTTED: (usize, usize) = (4, 64);
const WARMUP: Duration = Duration::from_millis(500);

/// The windows of one row.
struct Row {
    conns: usize,
    inflight: usize,
    validate: Vec<Window>,
    empty: Vec<Window>,
    /// Counter increments over the Validate windows; `None` without metrics.
    cache: Option<Counters>,
}

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let db = ctx.sqlite("validate.db");
    ctx.bootstrap(&db)?;
    let tokens = Arc::new(ctx.seed(&db, ctx.args.tokens, true, 0).await?);
    let mut args = flags(&[
        ("--http-listen", "127.0.0.1:0".into()),
        ("--cache-ttl", "1h".into()),
        ("--last-use-flush-interval", "1h".into()),
        // Room to spare: at capacity the cache may refuse new entries.
        (
            "--cache-capacity",
            (2 * tokens.len()).max(1_000_000).to_string(),
        ),
    ]);
    args.extend(ctx.args.serve_arg.iter().cloned());
    let server = ctx.serve(&db, true, &args)?;
    let cached = warm(ctx, &server, &tokens).await?;
    let windows = CONNS.len() * INFLIGHT.len() * ctx.args.repeats as usize * 2;
    let bar = ctx
        .progress
        .counter(windows as u64, "Validate / empty RPC windows");
    let mut rows = Vec::new();
    for conns in CONNS {
        for inflight in INFLIGHT {
            let row = measure(ctx, &server, &tokens, conns, inflight, &bar).await?;
            ctx.progress.println(&format!("      {}", summary(&row)));
            rows.push(row);
        }
    }
    bar.finish();
    // Right after the closed-loop rows, whose empty-RPC maximum sets its rates.
    let below = open_loop::run(ctx, &server, &tokens, &rows).await?;
    let adapters = adapters(ctx, &server, &tokens).await?;
    server.stop()?;
    let plotted = draw(ctx, &rows)?;
    Ok(render(ctx, &rows, &cached, plotted.as_deref()) + &adapters + "\n" + &below)
}

/// The proxy adapters beside Validate, same server, same tokens: Envoy's `Check` over gRPC
/// (4 connections × 64 in flight, as Validate) and forward-auth over 64 keep-alive HTTP/1.1
/// connections (64 in flight), alternating with Validate.
async fn adapters(
    ctx: &Ctx,
    server: &Server,
    tokens: &Arc<Vec<String>>,
) -> Result<String, BoxError> {
    let repeats = ctx.args.repeats;
    let calls = [Call::Validate, Call::ExtAuthz, Call::ForwardAuth];
    let bar = ctx.progress.counter(
        (calls.len() * repeats as usize) as u64,
        "adapters beside Validate",
    );
    let mut windows: Vec<Vec<Window>> = calls.iter().map(|_| Vec::new()).collect();
    for r in 0..repeats as usize {
        for k in 0..calls.len() {
            // Rotate the order on every repeat.
            let i = (k + r) % calls.len();
            let call = calls[i];
            let conns = if call == Call::ForwardAuth { 64 } else { 4 };
            let load = Load {
                call,
                tokens,
                conns,
                inflight: 64,
                warmup: WARMUP,
                window: Duration::from_secs(ctx.args.seconds),
            };
            windows[i].push(load::run(server, &load).await?);
            bar.inc(1);
        }
    }
    bar.finish();
    let validate_cpu = Medians::of(&windows[0]).cpu_us;
    let body: Vec<Vec<String>> = calls
        .iter()
        .zip(&windows)
        .map(|(call, ws)| {
            let m = Medians::of(ws);
            vec![
                call.to_string(),
                m.rate(),
                format!("{:.3} / {:.3}", m.p50, m.p99),
                format!("{:.1}", m.cpu_us),
                format!("**{:.2}**", m.cpu_us / validate_cpu.max(f64::MIN_POSITIVE)),
            ]
        })
        .collect();
    Ok(format!(
        "\n### The proxy adapters beside `Validate`\n\nThe same server and cached tokens: Envoy's `envoy.service.auth.v3.Authorization/Check` on the gRPC port (4 connections × 64 in flight, like the Validate row it is compared with) and `GET /v1/forward-auth` on the HTTP listener over 64 keep-alive HTTP/1.1 connections (64 in flight; HTTP/1.1 has one call in flight per connection). {repeats} windows of {} s each, the three calls alternating in a rotating order; medians. Target: each adapter within 1.3× of Validate's server CPU per call.\n\n{}",
        ctx.args.seconds,
        table(
            &[
                "call",
                "calls/s",
                "p50 / p99 ms",
                "server CPU µs per call",
                "CPU / Validate's"
            ],
            &body,
        )
    ))
}

/// Validates every token once (fills the cache), then checks they are all cached: a second
/// pass in which every token is valid again and, with metrics, no Argon2 is computed.
/// Returns the sentence that says how it was checked.
async fn warm(ctx: &Ctx, server: &Server, tokens: &Arc<Vec<String>>) -> Result<String, BoxError> {
    let n = tokens.len() as u64;
    let bar = ctx.progress.counter(n, "warm-up: every token once");
    let first = load::validate_each(server, tokens, 64, Expect::Valid, &bar).await?;
    bar.finish();
    let before = server.counters();
    let bar = ctx.progress.counter(n, "check: every token again");
    let second = load::validate_each(server, tokens, 64, Expect::Valid, &bar).await?;
    bar.finish();
    let timing = format!(
        "warm-up {:.1} s, second pass {:.1} s",
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    match (before, server.counters()) {
        (Some(before), Some(after)) => {
            let d = after.since(&before);
            if d.argon2 > 0.0 || d.hit < n as f64 {
                return Err(format!(
                    "not every token was cached after the warm-up: the second pass computed \
                     {} Argon2 hashes and had {} cache hits for {n} tokens",
                    d.argon2, d.hit
                )
                .into());
            }
            Ok(format!(
                "After the warm-up a second pass over all tokens was served from the cache: \
                 {n} hits and no Argon2 computation in the server's counters ({timing})."
            ))
        }
        _ => Ok(format!(
            "Every token was validated in the warm-up and again in a second pass ({timing}); \
             without server metrics that the second pass came from the cache is not measured."
        )),
    }
}

/// The windows of one row: `repeats` of each call, alternating, the first call swapped on
/// every repeat (V E, E V, V E, …).
async fn measure(
    ctx: &Ctx,
    server: &Server,
    tokens: &Arc<Vec<String>>,
    conns: usize,
    inflight: usize,
    bar: &ProgressBar,
) -> Result<Row, BoxError> {
    let repeats = ctx.args.repeats;
    let mut row = Row {
        conns,
        inflight,
        validate: Vec::new(),
        empty: Vec::new(),
        cache: server.has_metrics().then(Counters::default),
    };
    for r in 0..repeats {
        let order = if r % 2 == 0 {
            [Call::Validate, Call::Empty]
        } else {
            [Call::Empty, Call::Validate]
        };
        for call in order {
            bar.set_message(format!(
                "{conns} conn × {inflight}: {call} {}/{repeats}",
                r + 1
            ));
            let load = Load {
                call,
                tokens,
                conns,
                inflight,
                warmup: WARMUP,
                window: Duration::from_secs(ctx.args.seconds),
            };
            if call == Call::Empty {
                row.empty.push(load::run(server, &load).await?);
            } else {
                let before = server.counters();
                row.validate.push(load::run(server, &load).await?);
                let delta = before.zip(server.counters()).map(|(b, a)| a.since(&b));
                row.cache = row.cache.zip(delta).map(|(sum, d)| sum.plus(&d));
            }
            bar.inc(1);
        }
    }
    Ok(row)
}

/// Medians over the windows of one call.
struct Medians {
    per_sec: f64,
    /// Half the range of calls/s over the windows, relative to the median.
    spread: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us: f64,
}

impl Medians {
    fn of(windows: &[Window]) -> Self {
        let m = |f: &dyn Fn(&Window) -> f64| median(windows.iter().map(f).collect());
        let rates: Vec<f64> = windows.iter().map(Window::per_sec).collect();
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
            cpu_us: m(&|w| w.cpu_us_per_call()),
        }
    }

    fn rate(&self) -> String {
        format!("{:.0} ±{:.0}%", self.per_sec, self.spread * 100.0)
    }

    fn latency(&self) -> String {
        format!("{:.3} / {:.3} / {:.3}", self.p50, self.p99, self.p999)
    }
}

fn summary(row: &Row) -> String {
    let (v, e) = (Medians::of(&row.validate), Medians::of(&row.empty));
    format!(
        "{} conn × {}: Validate {:.0}/s, empty {:.0}/s, ratio {:.2}",
        row.conns,
        row.inflight,
        v.per_sec,
        e.per_sec,
        v.per_sec / e.per_sec.max(f64::MIN_POSITIVE)
    )
}

fn cells(row: &Row) -> Vec<String> {
    let (v, e) = (Medians::of(&row.validate), Medians::of(&row.empty));
    let (hits, argon2) = match &row.cache {
        Some(c) => (
            c.hit_rate()
                .map_or("n/a".into(), |r| format!("{:.2} %", r * 100.0)),
            format!("{:.0}", c.argon2),
        ),
        None => ("n/a".into(), "n/a".into()),
    };
    vec![
        row.conns.to_string(),
        row.inflight.to_string(),
        v.rate(),
        v.latency(),
        e.rate(),
        e.latency(),
        format!("**{:.2}**", v.per_sec / e.per_sec.max(f64::MIN_POSITIVE)),
        format!(
            "{:.1} / {:.1} = **{:.2}**",
            v.cpu_us,
            e.cpu_us,
            v.cpu_us / e.cpu_us.max(f64::MIN_POSITIVE)
        ),
        hits,
        argon2,
    ]
}

/// Writes the plot of [`PLOTTED`] (every window of the row pooled); returns its link.
fn draw(ctx: &Ctx, rows: &[Row]) -> Result<Option<String>, BoxError> {
    let (Some((path, link)), Some(row)) = (
        ctx.plot_target(),
        rows.iter().find(|r| (r.conns, r.inflight) == PLOTTED),
    ) else {
        return Ok(None);
    };
    let v = Lat::pooled(row.validate.iter().map(|w| &w.lat));
    let e = Lat::pooled(row.empty.iter().map(|w| &w.lat));
    let title = format!(
        "Latency by percentile, {} connections × {} in flight",
        PLOTTED.0, PLOTTED.1
    );
    plot::write(
        &path,
        &title,
        &[
            plot::Series {
                name: "cached Validate",
                lat: &v,
                color: RGBColor(214, 39, 40),
            },
            plot::Series {
                name: "empty RPC (health check)",
                lat: &e,
                color: RGBColor(31, 119, 180),
            },
        ],
    )?;
    Ok(Some(link))
}

fn render(ctx: &Ctx, rows: &[Row], cached: &str, plot: Option<&str>) -> String {
    let a = &ctx.args;
    let header = [
        "connections",
        "in flight",
        "Validate calls/s",
        "Validate p50 / p99 / p999 ms",
        "empty calls/s",
        "empty p50 / p99 / p999 ms",
        "throughput ratio",
        "server CPU µs per call: Validate / empty = ratio",
        "cache hits (Validate windows)",
        "Argon2 (Validate windows)",
    ];
    let body: Vec<Vec<String>> = rows.iter().map(cells).collect();
    let mut s = format!(
        "## Cached `Validate` against an empty RPC\n\n\
         {} tokens in the store (SQLite); each Validate call presents a different one, \
         round-robin. The empty RPC is `grpc.health.v1.Health/Check` served by the same tonic \
         server in the same process, so the ratio columns are what Validate costs beyond \
         gRPC itself. {cached}\n\n\
         The server runs with `--cache-ttl 1h`, so no entry reaches its time to live during \
         the run and every call is a cache hit rather than a row re-read, and \
         `--last-use-flush-interval 1h`, so the last-use flush (by default once a minute, \
         writing the minute's used tokens) is kept out of every window{}.\n\n\
         Each row is {} window(s) of {} s of each call, Validate and empty alternating and the \
         first of the pair swapped on each repeat (V E, E V, …); each window opens its own \
         connections and starts after {} ms of unrecorded calls. The table shows the median \
         window: calls/s (± half the range over the windows), the median of each percentile, \
         and server CPU (user + system of the server process from `/proc`, 10 ms ticks) per \
         call; the ratios are of those medians. Cache hits and Argon2 computations are the \
         server's counters over all Validate windows of the row, warm-up calls included.\n\n",
        a.tokens,
        if a.serve_arg.is_empty() {
            String::new()
        } else {
            format!(
                " (extra server flags for this table: `{}`)",
                a.serve_arg.join(" ")
            )
        },
        a.repeats,
        a.seconds,
        WARMUP.as_millis(),
    );
    s.push_str(&table(&header, &body));
    if let Some(link) = plot {
        s.push_str(&format!(
            "\n![Validate and empty-RPC latency by percentile, {} connections × {} in flight, \
             all windows pooled]({link})\n",
            PLOTTED.0, PLOTTED.1
        ));
    }
    s
}
