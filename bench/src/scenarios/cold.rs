//! Cold `Validate` (first use of a token: database read + Argon2 verify) against Argon2id
//! alone at the same parameters, and `Generate`, at production Argon2 cost.

use super::{Ctx, flags};
use crate::load::{self, Lat};
use crate::report::table;
use crate::server::{AdminClient, Server, admin_client};
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `jeton serve`'s default (production) Argon2id parameters.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

const GENERATED: usize = 200;
const GENERATE_INFLIGHT: usize = 8;
const COLD: usize = 50;

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let db = ctx.sqlite("cold.db");
    let admin = ctx.bootstrap(&db)?;
    // No Argon2 flags (the production cost); more tokens than the per-owner quota.
    let server = ctx.serve(
        &db,
        true,
        &flags(&[("--max-tokens-per-owner", "100000".into())]),
    )?;
    let client = admin_client(server.channel().await?, &admin)?;
    let (generated, took) = generate(ctx, client).await?;
    let gen_lat = Lat::new(generated.iter().map(|(_, ns)| *ns).collect());
    let secrets: Vec<String> = generated.into_iter().take(COLD).map(|(s, _)| s).collect();
    let (cold, argon2_in_server) = cold_validate(ctx, &server, &secrets).await?;
    server.stop()?;
    let spinner = ctx.progress.spinner("Argon2id alone, in this process");
    let alone = tokio::task::spawn_blocking(|| argon2_alone(COLD)).await??;
    spinner.finish();
    Ok(render(
        &cold,
        &alone,
        argon2_in_server,
        &gen_lat,
        GENERATED as f64 / took.as_secs_f64(),
    ))
}

/// Generates [`GENERATED`] tokens, [`GENERATE_INFLIGHT`] at a time; returns each secret with
/// its call's latency (ns), and the time it all took.
async fn generate(
    ctx: &Ctx,
    client: AdminClient,
) -> Result<(Vec<(String, u64)>, Duration), BoxError> {
    let bar = ctx.progress.counter(
        GENERATED as u64,
        format!("Generate, {GENERATE_INFLIGHT} in flight"),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..GENERATE_INFLIGHT)
        .map(|_| {
            let (mut client, next, bar) = (client.clone(), next.clone(), bar.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < GENERATED {
                    let t0 = Instant::now();
                    let r = client
                        .generate(proto::GenerateRequest {
                            name: "bench".into(),
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| format!("Generate failed: {e}"))?;
                    let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    out.push((r.into_inner().secret, ns));
                    bar.inc(1);
                }
                Ok::<_, String>(out)
            })
        })
        .collect();
    let mut generated = Vec::with_capacity(GENERATED);
    for task in tasks {
        generated.extend(task.await??);
    }
    let took = start.elapsed();
    bar.finish();
    Ok((generated, took))
}

/// Validates each secret once, one at a time (none is cached: `Generate` does not fill the
/// cache). Returns the latencies and, with metrics, the server's Argon2 computations.
async fn cold_validate(
    ctx: &Ctx,
    server: &Server,
    secrets: &[String],
) -> Result<(Lat, Option<f64>), BoxError> {
    let bar = ctx
        .progress
        .counter(secrets.len() as u64, "cold Validate, one at a time");
    let mut client = TokenServiceClient::new(server.channel().await?);
    let before = server.counters();
    let mut ns = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let t0 = Instant::now();
        let r = load::validate(&mut client, secret).await?;
        ns.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if !r.valid {
            return Err(format!("a generated token did not validate ({:?})", r.reason()).into());
        }
        bar.inc(1);
    }
    bar.finish();
    let argon2 = before
        .zip(server.counters())
        .map(|(b, a)| a.since(&b).argon2);
    Ok((Lat::new(ns), argon2))
}

/// `runs` Argon2id computations at the production parameters, each timed alone, in memory
/// allocated and faulted in beforehand: the floor a cold `Validate` is compared with.
fn argon2_alone(runs: usize) -> Result<Lat, String> {
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(32)).map_err(|e| e.to_string())?;
    let mut blocks = vec![Block::default(); params.block_count()];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    // The length of a token's secret part; the value does not change the cost.
    let secret = [b'x'; 43];
    let salt = b"saltsaltsaltsalt";
    let mut once = || -> Result<u64, String> {
        let t0 = Instant::now();
        argon
            .hash_password_into_with_memory(&secret, salt, &mut out, &mut blocks)
            .map_err(|e| e.to_string())?;
        Ok(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX))
    };
    once()?; // faults the memory in
    let ns = (0..runs).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
    Ok(Lat::new(ns))
}

fn render(cold: &Lat, alone: &Lat, argon2: Option<f64>, gen_lat: &Lat, gen_rate: f64) -> String {
    let rows = vec![
        vec![
            format!(
                "cold `Validate` (first use of a token: database read + Argon2 verify), \
                 {COLD} tokens, one at a time"
            ),
            cold.ms(0.5),
            cold.ms(0.99),
        ],
        vec![
            "Argon2id verify alone, same parameters, in the benchmark process".into(),
            alone.ms(0.5),
            alone.ms(0.99),
        ],
        vec![
            "**ratio of medians**".into(),
            format!(
                "**{:.2}**",
                cold.q_ms(0.5) / alone.q_ms(0.5).max(f64::MIN_POSITIVE)
            ),
            String::new(),
        ],
        vec![
            format!("`Generate`, {GENERATE_INFLIGHT} in flight"),
            gen_lat.ms(0.5),
            gen_lat.ms(0.99),
        ],
    ];
    let checked = match argon2 {
        Some(n) => format!(
            "The server's counters show {n:.0} Argon2 computations during the {COLD} cold \
             validations."
        ),
        None => "Without server metrics, that each cold validation computed one Argon2 hash is \
                 inferred (`Generate` does not fill the cache), not counted."
            .to_owned(),
    };
    format!(
        "## Cold `Validate` and `Generate` (Argon2id m={MEMORY_KIB} KiB, t={ITERATIONS}, \
         p={PARALLELISM})\n\n\
         One server at the production Argon2 cost (no Argon2 flags), on SQLite. First \
         {GENERATED} tokens are generated, {GENERATE_INFLIGHT} calls in flight; then the first \
         {COLD} of them are validated once each, one call at a time. {checked} The same \
         Argon2id computation is timed alone {COLD} times in the benchmark process (on the \
         load generator's core, into memory allocated and faulted in beforehand).\n\n{}\n\
         `Generate` throughput: **{gen_rate:.0} tokens/s** ({GENERATED} tokens, \
         {GENERATE_INFLIGHT} in flight; one Argon2 hash each, at most one per core of the \
         server at once).\n",
        table(&["figure", "p50 ms", "p99 ms"], &rows)
    )
}
