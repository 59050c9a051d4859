//! `jeton-bench`: measures jeton against its targets and writes `BENCHMARKS.md`.
//!
//! Every figure comes from real `jeton serve` processes (the binary next to this one) on
//! loopback, over real databases: SQLite files in a temporary directory and databases it
//! creates (and drops) on the PostgreSQL server given by `--pg-url`. Run it from a release
//! build: `cargo build --release && target/release/jeton-bench`.

use clap::Parser;
use jeton::bench_support::{argon2_verify_once, pg_database, pg_token_updates, seed_tokens};
use jeton::config::DatabaseUrl;
use jeton::service::proto::{self, token_service_client::TokenServiceClient};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks jeton and writes BENCHMARKS.md")]
struct Args {
    /// PostgreSQL server to create benchmark databases on (dropped afterwards)
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
    /// Seconds per throughput measurement
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Largest table for the List benchmark and number of tokens for the memory figure
    #[arg(long, default_value_t = 1_000_000)]
    big: usize,
    /// Tokens in the store for the Validate throughput benchmark
    #[arg(long, default_value_t = 100_000)]
    tokens: usize,
    /// Revocations measured for the propagation figure
    #[arg(long, default_value_t = 100)]
    revocations: usize,
    /// Where to write the report
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Run only the cached-Validate table (for experiments; writes nothing)
    #[arg(long)]
    only_validate: bool,
    /// Extra flags for the `jeton serve` of the cached-Validate table, e.g.
    /// `--serve-arg=--last-use-flush-interval=1h`
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// Where to write the latency plot (SVG)
    #[arg(long, default_value = "docs/validate-latency.svg")]
    plot: PathBuf,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    // The load generator on core 1, the server under test on core 0.
    let pinned = pin_self_to_core(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if pinned { 1 } else { 2 })
        .enable_all()
        .build()?;
    rt.block_on(run(args, pinned))
}

fn pin_self_to_core(core: u32) -> bool {
    cores() >= 2
        && Command::new("taskset")
            .args(["-cp", &core.to_string(), &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Cores of the machine (not of this process's affinity mask, which pinning narrows).
fn cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
}

/// A `jeton serve` child process.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &str, pin_core: Option<u32>, extra: &[&str]) -> Result<Self, BoxError> {
        let jeton = std::env::current_exe()?.with_file_name("jeton");
        let mut cmd = match pin_core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string()]).arg(&jeton);
                cmd
            }
            None => Command::new(&jeton),
        };
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db])
            .args(extra)
            .env("JETON_LOG", "warn,jeton::app=info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(120))?;
        Ok(Self { child, addr })
    }

    async fn channel(&self) -> Result<Channel, BoxError> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    /// User + system CPU time of the server process so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn bootstrap(db: &str) -> Result<String, BoxError> {
    let jeton = std::env::current_exe()?.with_file_name("jeton");
    let out = Command::new(jeton)
        .args([
            "bootstrap",
            "--tenant",
            "bench",
            "--admin",
            "admin@bench.test",
            "--database-url",
            db,
        ])
        .env("JETON_LOG", "warn")
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Latencies in microseconds, with summaries.
#[derive(Default, Clone)]
struct Lat(Vec<u32>);

impl Lat {
    fn sorted(mut self) -> Self {
        self.0.sort_unstable();
        self
    }
    fn q(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64
    }
    fn ms(&self, p: f64) -> String {
        format!("{:.3}", self.q(p) / 1000.0)
    }
}

#[derive(Clone, Copy)]
enum Call {
    Validate,
    Empty,
}

/// Runs `inflight` loops over `conns` connections for `secs`; returns calls/s and latencies.
async fn load(
    server: &Server,
    call: Call,
    tokens: Arc<Vec<String>>,
    conns: usize,
    inflight: usize,
    secs: u64,
) -> Result<(f64, Lat), BoxError> {
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(server.channel().await?);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for slot in 0..inflight {
        let ch = channels[slot % conns].clone();
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut tc = TokenServiceClient::new(ch.clone());
            let mut hc = HealthClient::new(ch);
            let mut i = slot * 7919;
            while Instant::now() < deadline {
                i += 1;
                let t0 = Instant::now();
                let ok = match call {
                    Call::Validate => tc
                        .validate(proto::ValidateRequest {
                            token: tokens[i % tokens.len()].clone(),
                            ..Default::default()
                        })
                        .await
                        .is_ok_and(|r| r.get_ref().valid),
                    Call::Empty => hc
                        .check(HealthCheckRequest {
                            service: "jeton.v1.TokenService".into(),
                        })
                        .await
                        .is_ok(),
                };
                if !ok {
                    return Err::<Vec<u32>, String>("a call failed during the load".into());
                }
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / elapsed, Lat(all).sorted()))
}

/// Validates every token once, `inflight` at a time (fills the cache).
async fn warm(server: &Server, tokens: &Arc<Vec<String>>, inflight: usize) -> Result<(), BoxError> {
    let ch = server.channel().await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let (tokens, next, ch) = (tokens.clone(), next.clone(), ch.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TokenServiceClient::new(ch);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = tokens.get(i) else {
                    return Ok::<(), String>(());
                };
                let r = c
                    .validate(proto::ValidateRequest {
                        token: t.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.get_ref().valid {
                    return Err(format!("seeded token {i} did not validate"));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create(admin: &str, name: &str) -> Result<Self, BoxError> {
        pg_database(admin, name, false).await?;
        pg_database(admin, name, true).await?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(Self {
            admin: admin.to_owned(),
            name: name.to_owned(),
            url: format!("{base}/{name}"),
        })
    }

    async fn drop(self) {
        let _ = pg_database(&self.admin, &self.name, false).await;
    }
}

async fn list_latency(
    server: &Server,
    admin: &str,
    status: i32,
    n: usize,
) -> Result<Lat, BoxError> {
    let ch = server.channel().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {admin}").parse()?;
    let mut c = TokenServiceClient::with_interceptor(ch, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    let mut lat = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let r = c
            .list(proto::ListRequest {
                page_size: 100,
                status,
                ..Default::default()
            })
            .await?;
        lat.push(t0.elapsed().as_micros() as u32);
        if r.get_ref().tokens.len() != 100 {
            return Err("List returned a short page".into());
        }
    }
    Ok(Lat(lat).sorted())
}

async fn run(args: Args, pinned: bool) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let mut report = String::new();
    let mut notes = Vec::new();
    let now = chrono::Utc::now();
    let pin = pinned.then_some(0);

    // 1. Cached Validate against an empty RPC on the same server.
    eprintln!("[1/7] seeding {} tokens for Validate…", args.tokens);
    let db = sqlite_url(dir.path(), "validate.db");
    let _admin = bootstrap(&db)?;
    let tokens = Arc::new(
        seed_tokens(
            &DatabaseUrl::new(db.clone()),
            "bench",
            "admin@bench.test",
            args.tokens,
            true,
            now,
        )
        .await?,
    );
    let extra: Vec<&str> = args.serve_arg.iter().map(String::as_str).collect();
    let server = Server::start(&db, pin, &extra)?;
    warm(&server, &tokens, 64).await?;
    let mut rows = String::new();
    let mut plot = None;
    for conns in [1usize, 4] {
        for inflight in [16usize, 64, 256] {
            eprintln!("      {conns} connection(s), {inflight} in flight");
            let cpu0 = server.cpu();
            let (v_tput, v_lat) = load(
                &server,
                Call::Validate,
                tokens.clone(),
                conns,
                inflight,
                args.seconds,
            )
            .await?;
            let cpu1 = server.cpu();
            let (e_tput, e_lat) = load(
                &server,
                Call::Empty,
                tokens.clone(),
                conns,
                inflight,
                args.seconds,
            )
            .await?;
            let cpu2 = server.cpu();
            let v_cpu = (cpu1 - cpu0).as_secs_f64() * 1e6 / (v_tput * args.seconds as f64);
            let e_cpu = (cpu2 - cpu1).as_secs_f64() * 1e6 / (e_tput * args.seconds as f64);
            let _ = writeln!(
                rows,
                "| {conns} | {inflight} | {:.0} | {} / {} / {} | {:.0} | {} / {} / {} | **{:.2}** | {:.1} / {:.1} = **{:.2}** |",
                v_tput,
                v_lat.ms(0.5),
                v_lat.ms(0.99),
                v_lat.ms(0.999),
                e_tput,
                e_lat.ms(0.5),
                e_lat.ms(0.99),
                e_lat.ms(0.999),
                v_tput / e_tput,
                v_cpu,
                e_cpu,
                v_cpu / e_cpu
            );
            if conns == 4 && inflight == 64 {
                plot = Some((v_lat, e_lat));
            }
        }
    }
    let _ = writeln!(
        report,
        "## Cached `Validate` against an empty RPC\n\n{} tokens in the store (SQLite), every one validated once first so all are \
         in the cache; each call validates a different token, round-robin. The empty RPC is \
         `grpc.health.v1.Health/Check` served by the same tonic server in the same process. \
         Validate and the empty RPC alternate, {} s each, at every concurrency. {}\n\n\
         | connections | in flight | Validate calls/s | Validate p50 / p99 / p999 ms | empty calls/s | empty p50 / p99 / p999 ms | throughput ratio | server CPU µs per call: Validate / empty = ratio |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n{rows}",
        args.tokens,
        args.seconds,
        if pinned {
            "Server pinned to core 0 (`taskset -c 0`), load generator (one tokio worker) to core 1."
        } else {
            "Not pinned (taskset unavailable or one core)."
        }
    );
    if args.only_validate {
        println!("{rows}");
        return Ok(());
    }
    if let Some((v, e)) = &plot {
        write_plot(&args.plot, v, e)?;
        let _ = writeln!(
            report,
            "\n![Validate and empty-RPC latency by percentile, 4 connections, 64 in flight]({})\n",
            args.plot.display()
        );
    }
    drop(server);

    // 2. Cold Validate against Argon2 alone; Generate throughput (production Argon2 cost).
    eprintln!("[2/7] cold Validate and Generate at production Argon2 cost…");
    let db = sqlite_url(dir.path(), "cold.db");
    let admin = bootstrap(&db)?;
    let server = Server::start(&db, pin, &[])?;
    let ch = server.channel().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {admin}").parse()?;
    let mut gen_client =
        TokenServiceClient::with_interceptor(ch.clone(), move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    let gen_count = 200;
    let start = Instant::now();
    let mut handles = Vec::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..8 {
        let (mut c, next) = (gen_client.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < gen_count {
                let t0 = Instant::now();
                let r = c
                    .generate(proto::GenerateRequest {
                        name: "bench".into(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                out.push((r.into_inner().secret, t0.elapsed().as_micros() as u32));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut generated = Vec::new();
    for h in handles {
        generated.extend(h.await??);
    }
    let gen_tput = generated.len() as f64 / start.elapsed().as_secs_f64();
    let gen_lat = Lat(generated.iter().map(|(_, l)| *l).collect()).sorted();
    let mut cold = Vec::new();
    let mut vc = TokenServiceClient::new(ch.clone());
    for (secret, _) in generated.iter().take(50) {
        let t0 = Instant::now();
        let r = vc
            .validate(proto::ValidateRequest {
                token: secret.clone(),
                ..Default::default()
            })
            .await?;
        cold.push(t0.elapsed().as_micros() as u32);
        if !r.get_ref().valid {
            return Err("cold validation failed".into());
        }
    }
    let cold = Lat(cold).sorted();
    let argon = Lat((0..50)
        .map(|_| argon2_verify_once().as_micros() as u32)
        .collect())
    .sorted();
    let _ = gen_client.list(proto::ListRequest::default()).await?;
    drop(server);
    let _ = writeln!(
        report,
        "## Cold `Validate` and `Generate` (Argon2id m=19 MiB, t=2, p=1)\n\n\
         | figure | p50 ms | p99 ms |\n| --- | --- | --- |\n\
         | cold `Validate` (first use of a token: database read + Argon2 verify), 50 tokens, one at a time | {} | {} |\n\
         | Argon2id verify alone, same parameters, in the benchmark process | {} | {} |\n\
         | **ratio of medians** | **{:.2}** | |\n\
         | `Generate`, 8 in flight | {} | {} |\n\n\
         `Generate` throughput: **{:.0} tokens/s** ({} tokens, 8 in flight; one Argon2 hash each, at most one per core at once).\n",
        cold.ms(0.5),
        cold.ms(0.99),
        argon.ms(0.5),
        argon.ms(0.99),
        cold.q(0.5) / argon.q(0.5),
        gen_lat.ms(0.5),
        gen_lat.ms(0.99),
        gen_tput,
        gen_count
    );

    // 3. List cost against table size, both engines.
    eprintln!("[3/7] List at 10^4, 10^5, {} tokens, SQLite…", args.big);
    let mut list_rows = String::new();
    let sizes: Vec<usize> = [10_000usize, 100_000, args.big]
        .into_iter()
        .filter(|&n| n <= args.big)
        .collect();
    let sqlite_big = sqlite_url(dir.path(), "big.db");
    let big_admin = bootstrap(&sqlite_big)?;
    let mut big_tokens = Vec::new();
    let mut have = 0;
    for &n in &sizes {
        big_tokens.extend(
            seed_tokens(
                &DatabaseUrl::new(sqlite_big.clone()),
                "bench",
                "admin@bench.test",
                n - have,
                true,
                now,
            )
            .await?,
        );
        have = n;
        let server = Server::start(&sqlite_big, pin, &[])?;
        let plain = list_latency(&server, &big_admin, 0, 200).await?;
        let active =
            list_latency(&server, &big_admin, proto::TokenStatus::Active as i32, 200).await?;
        let _ = writeln!(
            list_rows,
            "| SQLite | {n} | {} | {} | {} | {} |",
            plain.ms(0.5),
            plain.ms(0.99),
            active.ms(0.5),
            active.ms(0.99)
        );
    }
    eprintln!("[4/7] List, PostgreSQL…");
    let pg = PgDb::create(&args.pg_url, "jeton_bench_list").await?;
    let pg_admin = bootstrap(&pg.url)?;
    let mut have = 0;
    for &n in &sizes {
        seed_tokens(
            &DatabaseUrl::new(pg.url.clone()),
            "bench",
            "admin@bench.test",
            n - have,
            false,
            now,
        )
        .await?;
        have = n;
        let server = Server::start(&pg.url, pin, &[])?;
        let plain = list_latency(&server, &pg_admin, 0, 200).await?;
        let active =
            list_latency(&server, &pg_admin, proto::TokenStatus::Active as i32, 200).await?;
        let _ = writeln!(
            list_rows,
            "| PostgreSQL | {n} | {} | {} | {} | {} |",
            plain.ms(0.5),
            plain.ms(0.99),
            active.ms(0.5),
            active.ms(0.99)
        );
    }
    pg.drop().await;
    let _ = writeln!(
        report,
        "## `List`, one page of 100, against table size\n\nAll tokens in one tenant and owned by the caller (an admin); \
         a third never used, a third used now, a third 30 days ago. 200 calls each, one at a time.\n\n\
         | engine | tokens | p50 ms | p99 ms | p50 ms, status ACTIVE | p99 ms, status ACTIVE |\n| --- | --- | --- | --- | --- | --- |\n{list_rows}"
    );

    // 4. Memory per cached token.
    eprintln!("[5/7] memory with {} cached tokens…", big_tokens.len());
    let server = Server::start(
        &sqlite_big,
        pin,
        &[
            "--cache-capacity",
            &(big_tokens.len() * 2).to_string(),
            "--cache-ttl",
            "1h",
        ],
    )?;
    let big_tokens = Arc::new(big_tokens);
    let one = Arc::new(vec![big_tokens[0].clone()]);
    warm(&server, &one, 1).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = server.rss();
    warm(&server, &big_tokens, 64).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = server.rss();
    let per = (rss1.saturating_sub(rss0)) as f64 / big_tokens.len() as f64;
    drop(server);
    let _ = writeln!(
        report,
        "## Memory per cached token\n\nRSS of the server after validating one token: {:.1} MiB; after validating all {} once \
         (all cached): {:.1} MiB. **{:.0} bytes per cached token** (token row, digest, cache bookkeeping).\n",
        rss0 as f64 / 1048576.0,
        big_tokens.len(),
        rss1 as f64 / 1048576.0,
        per
    );

    // 5. Revocation propagation between two replicas on PostgreSQL.
    eprintln!("[6/7] revocation propagation, two replicas on PostgreSQL…");
    let pg = PgDb::create(&args.pg_url, "jeton_bench_replicas").await?;
    let admin = bootstrap(&pg.url)?;
    let victims = seed_tokens(
        &DatabaseUrl::new(pg.url.clone()),
        "bench",
        "admin@bench.test",
        args.revocations,
        true,
        now,
    )
    .await?;
    let a = Server::start(&pg.url, None, &[])?;
    let b = Server::start(&pg.url, None, &[])?;
    let ach = a.channel().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {admin}").parse()?;
    let mut revoker = TokenServiceClient::with_interceptor(ach, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    let mut bv = TokenServiceClient::new(b.channel().await?);
    let mut delays = Vec::new();
    for t in &victims {
        let req = || proto::ValidateRequest {
            token: t.clone(),
            ..Default::default()
        };
        for _ in 0..2 {
            if !bv.validate(req()).await?.get_ref().valid {
                return Err("victim token not valid on B".into());
            }
        }
        let id = t[4..26].to_owned();
        revoker.revoke(proto::RevokeRequest { id }).await?;
        let revoked_at = Instant::now();
        loop {
            let r = bv.validate(req()).await?;
            if r.get_ref().reason == proto::Reason::Revoked as i32 {
                delays.push(revoked_at.elapsed().as_micros() as u32);
                break;
            }
            if revoked_at.elapsed() > Duration::from_secs(10) {
                return Err("revocation never reached replica B".into());
            }
        }
    }
    let delays = Lat(delays).sorted();

    // 6. Database writes caused by 10^6 validations of one token within a minute.
    eprintln!("[7/7] last-use writes for 10^6 validations of one token…");
    let one = Arc::new(vec![fresh_token(&pg.url).await?]);
    // A fresh replica C, so that only this token's last use can be written.
    drop(b);
    let c = Server::start(&pg.url, None, &[])?;
    // Replicas A and B flush their own last-use times when they stop: stop them first.
    // PostgreSQL publishes a backend's table statistics up to 10 s late (idle interval): wait
    // that long before taking the baseline and the final count.
    drop(a);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let updates0 = pg_token_updates(&pg.url).await?;
    let mut done = 0usize;
    let start = Instant::now();
    while done < 1_000_000 && start.elapsed() < Duration::from_secs(55) {
        let (tput, _) = load(&c, Call::Validate, one.clone(), 4, 64, 5).await?;
        done += (tput * 5.0) as usize;
    }
    drop(c); // SIGTERM: the final flush happens here
    tokio::time::sleep(Duration::from_secs(11)).await;
    let updates1 = pg_token_updates(&pg.url).await?;
    pg.drop().await;
    let _ = writeln!(
        report,
        "## Revocation across replicas, and last-use writes\n\nTwo `jeton serve` processes on one PostgreSQL database. For each of \
         {} tokens: validate it on replica B until cached, revoke it through replica A, then validate on B in a tight loop; \
         the delay runs from `Revoke` returning on A to B's first `REASON_REVOKED`.\n\n\
         | delay | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |\n| revocation visible on B | {} | {} | {} |\n\n\
         Then {} validations of one token through a third replica, C, within {:.0} s (including its shutdown flush): \
         **{} row update(s)** of `tokens` (from `pg_stat_user_tables.n_tup_upd`).\n",
        args.revocations,
        delays.ms(0.5),
        delays.ms(0.99),
        delays.ms(1.0),
        done,
        start.elapsed().as_secs_f64(),
        updates1 - updates0
    );

    notes.push(format!(
        "Machine: {} cores ({}), {} GiB; {}.",
        cores(),
        cpu_model(),
        total_mem_gib(),
        rustc_version()
    ));
    let doc = format!(
        "# Benchmarks\n\nMeasured by `jeton-bench` ({}). Reproduce with:\n\n```sh\ncargo build --release\ntarget/release/jeton-bench\n```\n\n\
         {}\n\n{}",
        now.format("%Y-%m-%d"),
        notes.join(" "),
        report
    );
    std::fs::write(&args.out, &doc)?;
    println!("{doc}");
    Ok(())
}

/// One more live token (the seeded ones above were all revoked).
async fn fresh_token(url: &str) -> Result<String, BoxError> {
    let fresh = seed_tokens(
        &DatabaseUrl::new(url.to_owned()),
        "bench",
        "admin@bench.test",
        1,
        true,
        chrono::Utc::now(),
    )
    .await?;
    fresh.into_iter().next().ok_or_else(|| "no token".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn total_mem_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024)
}

fn rustc_version() -> String {
    Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Latency by percentile, Validate against the empty RPC, as a small SVG.
fn write_plot(path: &std::path::Path, v: &Lat, e: &Lat) -> Result<(), BoxError> {
    let (w, h, left, bottom, top, right) = (720.0, 400.0, 70.0, 50.0, 30.0, 20.0);
    let percentiles: Vec<f64> = (0..=999).map(|i| i as f64 / 1000.0).collect();
    let ymax = (v.q(0.999).max(e.q(0.999)) / 1000.0 * 1.1).max(0.01);
    let x = |p: f64| left + p * (w - left - right);
    let y = |ms: f64| h - bottom - (ms / ymax).min(1.0) * (h - bottom - top);
    let line = |lat: &Lat| {
        percentiles
            .iter()
            .map(|&p| format!("{:.1},{:.1}", x(p), y(lat.q(p) / 1000.0)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Latency by percentile, 4 connections, 64 in flight</text>\n",
        w / 2.0
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>",
        h - bottom
    );
    for i in 0..=5 {
        let ms = ymax * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{ms:.2}</text>",
            left - 6.0,
            y(ms) + 4.0
        );
        let p = i as f64 / 5.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">p{:.0}</text>",
            x(p),
            h - bottom + 18.0,
            p * 100.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        (left + w - right) / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">latency (ms)</text>",
        h / 2.0,
        h / 2.0
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"{}\"/>",
        line(v)
    );
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" stroke-dasharray=\"6 3\" points=\"{}\"/>",
        line(e)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" fill=\"#d62728\">cached Validate</text>",
        left + 20.0,
        top + 20.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" fill=\"#1f77b4\">empty RPC (health check)</text>",
        left + 20.0,
        top + 38.0
    );
    svg.push_str("</svg>\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)?;
    Ok(())
}
