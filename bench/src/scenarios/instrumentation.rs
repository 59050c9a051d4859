//! What metrics cost on the hot path: cached `Validate` on two servers over the same
//! database, one with `--metrics-listen` and one without, both on the server core, measured
//! in alternating windows.

use super::{Ctx, flags};
use crate::load::{self, Call, Expect, Load, Window};
use crate::report::{median, table};
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::time::Duration;

const ROWS: [(usize, usize); 2] = [(1, 64), (4, 64)];
const TOKENS: usize = 20_000;

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let db = ctx.sqlite("instrumentation.db");
    ctx.bootstrap(&db)?;
    let tokens = Arc::new(ctx.seed(&db, TOKENS, true, 0).await?);
    let args = flags(&[
        ("--cache-ttl", "1h".into()),
        ("--last-use-flush-interval", "1h".into()),
    ]);
    let without = ctx.serve_with_metrics(&db, true, &args, false)?;
    let with = ctx.serve_with_metrics(&db, true, &args, true)?;
    if !with.has_metrics() {
        return Err("this jeton serve exposes no metrics".into());
    }
    for server in [&without, &with] {
        let bar = ctx.progress.counter(TOKENS as u64, "warm-up");
        load::validate_each(server, &tokens, 64, Expect::Valid, &bar).await?;
        bar.finish();
    }
    let windows = ROWS.len() * ctx.args.repeats as usize * 2;
    let bar = ctx
        .progress
        .counter(windows as u64, "with / without metrics");
    let mut body = Vec::new();
    for (conns, inflight) in ROWS {
        let (mut on, mut off): (Vec<Window>, Vec<Window>) = (Vec::new(), Vec::new());
        for r in 0..ctx.args.repeats {
            let order = if r % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for metrics in order {
                let load = Load {
                    call: Call::Validate,
                    tokens: &tokens,
                    conns,
                    inflight,
                    warmup: Duration::from_millis(500),
                    window: Duration::from_secs(ctx.args.seconds),
                };
                let server = if metrics { &with } else { &without };
                let w = load::run(server, &load).await?;
                if metrics {
                    on.push(w)
                } else {
                    off.push(w)
                }
                bar.inc(1);
            }
        }
        let cpu = |ws: &[Window]| median(ws.iter().map(Window::cpu_us_per_call).collect());
        let rate = |ws: &[Window]| median(ws.iter().map(Window::per_sec).collect());
        let (cpu_on, cpu_off) = (cpu(&on), cpu(&off));
        body.push(vec![
            conns.to_string(),
            inflight.to_string(),
            format!("{:.0}", rate(&off)),
            format!("{:.0}", rate(&on)),
            format!("{cpu_off:.2}"),
            format!("{cpu_on:.2}"),
            format!(
                "**{:+.1} %**",
                (cpu_on / cpu_off.max(f64::MIN_POSITIVE) - 1.0) * 100.0
            ),
        ]);
    }
    bar.finish();
    without.stop()?;
    with.stop()?;
    Ok(format!(
        "## {}\n\n{TOKENS} cached tokens; two servers on the same SQLite file, one started with \
         `--metrics-listen` (counters, histograms and gauges recorded on every call) and one \
         without, both pinned to the server core, with `--cache-ttl 1h` and \
         `--last-use-flush-interval 1h`. Cached `Validate` windows of {} s alternate between \
         them, {} of each per row; medians. Target: metrics cost at most 5 % of server CPU \
         per call.\n\n{}",
        super::Scenario::Instrumentation.title(),
        ctx.args.seconds,
        ctx.args.repeats,
        table(
            &[
                "connections",
                "in flight",
                "calls/s without metrics",
                "calls/s with metrics",
                "server CPU µs per call without",
                "with",
                "cost of metrics",
            ],
            &body,
        )
    ))
}
