//! `List`, one page of 100, at 10^4, 10^5 and `--big` tokens on SQLite and PostgreSQL: with
//! no filter, a status filter, a selective expiry filter, and deep in the listing.

use super::Ctx;
use crate::load::Lat;
use crate::report::table;
use crate::server::{AdminClient, admin_client};
use indicatif::ProgressBar;
use jeton::grpc::proto;
use jeton_testkit::BoxError;
use std::time::Instant;

const CALLS: usize = 200;
const PAGE: i32 = 100;
/// Pages followed before the timed one.
const DEPTH: usize = 50;
/// Every n-th seeded token expires (in 3 days).
const EXPIRING_EVERY: usize = 100;
const EXPIRE_WITHIN_DAYS: i64 = 7;

/// The requests timed at each size.
#[derive(Clone, Copy)]
enum Case {
    All,
    Inactive,
    Expiring,
    Deep,
}

const CASES: [Case; 4] = [Case::All, Case::Inactive, Case::Expiring, Case::Deep];

impl Case {
    fn request(self) -> proto::ListRequest {
        let mut r = proto::ListRequest {
            page_size: PAGE,
            ..Default::default()
        };
        match self {
            Case::All | Case::Deep => {}
            Case::Inactive => r.status = proto::TokenStatus::Inactive as i32,
            Case::Expiring => {
                r.expire_within = Some(prost_types::Duration {
                    seconds: EXPIRE_WITHIN_DAYS * 86_400,
                    nanos: 0,
                })
            }
        }
        r
    }
}

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let sizes: Vec<usize> = [10_000, 100_000, ctx.args.big]
        .into_iter()
        .filter(|&n| n <= ctx.args.big)
        .collect();
    let mut rows = Vec::new();
    let sqlite = ctx.sqlite("list.db");
    let admin = ctx.bootstrap(&sqlite)?;
    rows.extend(engine(ctx, "SQLite", &sqlite, &admin, &sizes).await?);
    let pg = ctx.postgres("list").await?;
    let admin = ctx.bootstrap(pg.url())?;
    rows.extend(engine(ctx, "PostgreSQL", pg.url(), &admin, &sizes).await?);
    drop(pg);
    Ok(render(&rows))
}

/// Grows the table of `db` to each size and measures every case on a fresh server.
async fn engine(
    ctx: &Ctx,
    name: &str,
    db: &str,
    admin: &str,
    sizes: &[usize],
) -> Result<Vec<Vec<String>>, BoxError> {
    let postgres = db.starts_with("postgres");
    let mut rows = Vec::new();
    let mut have = 0;
    for &n in sizes {
        ctx.seed(db, n - have, false, EXPIRING_EVERY).await?;
        have = n;
        if postgres {
            // As autovacuum would soon after a bulk load: the planner sees the new rows.
            jeton_testkit::postgres::statement(db, "ANALYZE tokens").await?;
        }
        let server = ctx.serve(db, true, &[])?;
        let mut client = admin_client(server.channel().await?, admin)?;
        let bar = ctx.progress.counter(
            (CASES.len() * CALLS) as u64,
            format!("{name}, {n} tokens: List"),
        );
        let mut row = vec![name.to_owned(), n.to_string()];
        for case in CASES {
            row.push(match time(&mut client, case, &bar).await? {
                Some((lat, rows)) if rows < PAGE as usize => {
                    format!("{} / {} ({rows} rows)", lat.ms(0.5), lat.ms(0.99))
                }
                Some((lat, _)) => format!("{} / {}", lat.ms(0.5), lat.ms(0.99)),
                None => "–".into(),
            });
        }
        bar.finish();
        server.stop()?;
        rows.push(row);
    }
    Ok(rows)
}

/// Times [`CALLS`] calls of `case`, one at a time; returns the latencies and the fewest rows
/// a page had (a full page but in tiny tables), or `None` when the listing is too short.
async fn time(
    client: &mut AdminClient,
    case: Case,
    bar: &ProgressBar,
) -> Result<Option<(Lat, usize)>, BoxError> {
    let mut request = case.request();
    if let Case::Deep = case {
        match page_token(client, DEPTH).await? {
            Some(token) => request.page_token = token,
            None => {
                bar.inc(CALLS as u64);
                return Ok(None);
            }
        }
    }
    let mut ns = Vec::with_capacity(CALLS);
    let mut fewest = usize::MAX;
    for _ in 0..CALLS {
        let t0 = Instant::now();
        let page = client.list(request.clone()).await?.into_inner();
        ns.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if page.tokens.is_empty() {
            return Err("List returned an empty page".into());
        }
        fewest = fewest.min(page.tokens.len());
        bar.inc(1);
    }
    Ok(Some((Lat::new(ns), fewest)))
}

/// The token of the page after `depth` pages without filter; `None` if the listing ends
/// first.
async fn page_token(client: &mut AdminClient, depth: usize) -> Result<Option<String>, BoxError> {
    let mut request = Case::Deep.request();
    for _ in 0..depth {
        let page = client.list(request.clone()).await?.into_inner();
        if page.next_page_token.is_empty() {
            return Ok(None);
        }
        request.page_token = page.next_page_token;
    }
    Ok(Some(request.page_token))
}

fn render(rows: &[Vec<String>]) -> String {
    let header = [
        "engine",
        "tokens",
        "no filter: p50 / p99 ms",
        "status INACTIVE (⅓): p50 / p99 ms",
        "expiring within 7 days (1 %): p50 / p99 ms",
        "page 51, no filter: p50 / p99 ms",
    ];
    format!(
        "## `List`, one page of 100, against table size\n\n\
         All tokens in one tenant and owned by the caller, an admin. As testkit seeds them, \
         every third token was never used, every third used at seeding time and every third \
         30 days before, so a status filter matches a third of the rows, interleaved: it is \
         not selective. The selective case is `expire_within` 7 days: every \
         {EXPIRING_EVERY}th token expires in 3 days, so the page of 100 is found among about \
         {} rows in creation order. Page 51 is reached by following `next_page_token` {DEPTH} \
         times without filter, then timed. Each cell: {CALLS} calls one at a time on the same \
         connection. The table grows in place (10^4, then 10^5, …) and the server (pinned) is \
         restarted at each size; PostgreSQL's table is `ANALYZE`d after each load, as \
         autovacuum would soon after it.\n\n{}",
        PAGE as usize * EXPIRING_EVERY,
        table(&header, rows)
    )
}
