//! Legitimate calls under a flood from callers who hold no valid token: cold `Validate`,
//! `Generate` and cached `Validate`, alone and beside 256 callers sending (a) random
//! well-formed tokens, (b) wrong secrets for a handful of real, uncached ids.

use super::{Ctx, flags};
use crate::load::{self, Lat};
use crate::report::table;
use crate::server::{AdminClient, Server, admin_client};
use jeton::domain::{Namespace, TokenString};
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use rand::RngExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Concurrent flooding callers, over this many connections.
const CALLERS: usize = 256;
const FLOOD_CONNS: usize = 16;
/// Real ids whose wrong secrets flood (b).
const VICTIMS: usize = 5;
/// Fresh tokens validated (cold), and tokens generated, per condition, one call at a time.
const COLD: usize = 50;
const GENERATE: usize = 50;
/// How long the flood runs before the probes, and the window its cost is measured in.
const SETTLE: Duration = Duration::from_secs(1);
const FLOOD_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flood {
    Alone,
    /// The reference: the same callers, each validating one cached, valid token.
    Cached,
    Random,
    WrongSecrets,
}

impl Flood {
    const ALL: [Flood; 4] = [
        Flood::Alone,
        Flood::Cached,
        Flood::Random,
        Flood::WrongSecrets,
    ];

    fn label(self) -> &'static str {
        match self {
            Flood::Alone => "alone",
            Flood::Cached => "256 callers validating one cached token (reference)",
            Flood::Random => "(a) 256 callers sending random well-formed tokens",
            Flood::WrongSecrets => "(b) 256 callers sending wrong secrets for 5 real uncached ids",
        }
    }
}

/// What one condition measured.
struct Row {
    flood: Flood,
    /// Flood calls per second, and the server's CPU per flood call (µs), over
    /// [`FLOOD_WINDOW`] with no probe running.
    rate: f64,
    cpu_us: f64,
    /// How the server answered the flood: gRPC code (or "valid"/"invalid: reason") → count.
    answers: BTreeMap<String, u64>,
    cached: Lat,
    cold: Lat,
    generate: Lat,
    /// Legitimate calls that failed or got a wrong answer.
    refused: usize,
}

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let db = ctx.sqlite("flood.db");
    let admin = ctx.bootstrap(&db)?;
    // No Argon2 flags: the production cost, where the amplification was; more tokens than
    // the per-owner quota.
    let server = ctx.serve(
        &db,
        true,
        &flags(&[("--max-tokens-per-owner", "100000".into())]),
    )?;
    let mut admin = admin_client(server.channel().await?, &admin)?;
    let mut pool = generate_pool(ctx, &mut admin, Flood::ALL.len() * COLD + VICTIMS + 1).await?;
    let cached = pool.pop().ok_or("no token")?;
    let victims: Vec<String> = pool.split_off(pool.len() - VICTIMS);
    let mut probe = TokenServiceClient::new(server.channel().await?);
    load::validate(&mut probe, &cached).await?; // now cached
    // The flood's own runtime and thread, so its 256 tasks do not queue the probes' calls in
    // the benchmark process; at the lowest priority, so that on the benchmark's core the
    // probes run as soon as they are ready and the flood gets all the time left.
    let flood_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(lowest_priority)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for flood in Flood::ALL {
        let bar = ctx
            .progress
            .spinner(format!("legitimate calls, {}", flood.label()));
        let fresh: Vec<String> = pool.drain(..COLD).collect();
        let row = condition(
            &server,
            &flood_rt,
            flood,
            &cached,
            &victims,
            &fresh,
            &mut admin,
            ctx.args.seconds,
        )
        .await?;
        bar.finish();
        rows.push(row);
    }
    flood_rt.shutdown_background();
    server.stop()?;
    Ok(render(&rows))
}

async fn generate_pool(
    ctx: &Ctx,
    admin: &mut AdminClient,
    n: usize,
) -> Result<Vec<String>, BoxError> {
    let bar = ctx
        .progress
        .counter(n as u64, "generating the legitimate tokens");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = admin
            .generate(proto::GenerateRequest {
                name: format!("flood-{i}"),
                ..Default::default()
            })
            .await?;
        out.push(r.into_inner().secret);
        bar.inc(1);
    }
    bar.finish();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn condition(
    server: &Server,
    flood_rt: &tokio::runtime::Runtime,
    flood: Flood,
    cached: &str,
    victims: &[String],
    fresh: &[String],
    admin: &mut AdminClient,
    seconds: u64,
) -> Result<Row, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let mut tasks = Vec::new();
    if flood != Flood::Alone {
        let mut channels = Vec::with_capacity(FLOOD_CONNS);
        for _ in 0..FLOOD_CONNS {
            channels.push(server.channel().await?);
        }
        for i in 0..CALLERS {
            let client = TokenServiceClient::new(channels[i % FLOOD_CONNS].clone());
            let attack = Attack {
                flood,
                cached: cached.to_owned(),
                victims: victims.to_vec(),
            };
            let (stop, calls, answers) = (stop.clone(), calls.clone(), answers.clone());
            tasks.push(flood_rt.spawn(attack.run(client, stop, calls, answers)));
        }
    }
    tokio::time::sleep(SETTLE).await;
    let (cpu0, calls0, t0) = (server.cpu(), calls.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(FLOOD_WINDOW).await;
    let flood_calls = calls.load(Ordering::Relaxed) - calls0;
    let (rate, cpu_us) = if flood == Flood::Alone {
        (0.0, 0.0)
    } else {
        (
            flood_calls as f64 / t0.elapsed().as_secs_f64(),
            (server.cpu() - cpu0).as_secs_f64() * 1e6 / flood_calls.max(1) as f64,
        )
    };

    let mut refused = 0;
    let mut probe = TokenServiceClient::new(server.channel().await?);
    // Cached Validate, one call at a time, for the window.
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut ns = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let ok = matches!(load::validate(&mut probe, cached).await, Ok(r) if r.valid);
        ns.push(elapsed_ns(t));
        refused += usize::from(!ok);
    }
    let cached_lat = Lat::new(ns);
    let mut ns = Vec::with_capacity(fresh.len());
    for token in fresh {
        let t = Instant::now();
        let ok = matches!(load::validate(&mut probe, token).await, Ok(r) if r.valid);
        ns.push(elapsed_ns(t));
        refused += usize::from(!ok);
    }
    let cold = Lat::new(ns);
    let mut ns = Vec::with_capacity(GENERATE);
    for i in 0..GENERATE {
        let t = Instant::now();
        let ok = admin
            .generate(proto::GenerateRequest {
                name: format!("probe-{i}"),
                ..Default::default()
            })
            .await
            .is_ok();
        ns.push(elapsed_ns(t));
        refused += usize::from(!ok);
    }
    let generate = Lat::new(ns);

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Row {
        flood,
        rate,
        cpu_us,
        answers,
        cached: cached_lat,
        cold,
        generate,
        refused,
    })
}

/// Nice 19 for the calling thread (Linux: `setpriority` on a thread id sets that thread's).
fn lowest_priority() {
    // SAFETY: plain system calls on this thread's own id, no memory is handed over.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One flooding caller's material.
struct Attack {
    flood: Flood,
    cached: String,
    victims: Vec<String>,
}

impl Attack {
    /// The next token this caller sends.
    fn token(&self) -> String {
        match self.flood {
            Flood::Alone | Flood::Cached => self.cached.clone(),
            Flood::Random => TokenString::generate(Namespace::Api)
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
            Flood::WrongSecrets => {
                let victim = &self.victims[rand::rng().random_range(0..self.victims.len())];
                wrong_secret(victim)
            }
        }
    }

    async fn run(
        self,
        mut client: TokenServiceClient<Channel>,
        stop: Arc<AtomicBool>,
        calls: Arc<AtomicU64>,
        answers: Arc<Mutex<BTreeMap<String, u64>>>,
    ) {
        let mut seen = BTreeMap::<String, u64>::new();
        while !stop.load(Ordering::Relaxed) {
            let answer = match load::validate(&mut client, &self.token()).await {
                Ok(r) if r.valid => "valid".to_owned(),
                Ok(r) => format!("invalid: {:?}", r.reason()),
                Err(e) => e,
            };
            *seen.entry(answer).or_default() += 1;
            calls.fetch_add(1, Ordering::Relaxed);
        }
        let mut all = answers.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in seen {
            *all.entry(k).or_default() += v;
        }
    }
}

/// `token` with its secret replaced by random characters and its checksum recomputed: a
/// well-formed token for a real id that anyone who saw the id can make (the format is
/// public: `jt?_` + 22-character id + 43-character secret + 6-character CRC32 in base62).
fn wrong_secret(token: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s: String = token[..4 + 22].to_owned();
    s.extend((0..43).map(|_| ALPHABET[rng.random_range(0..62)] as char));
    let mut crc = crc32fast::hash(s.as_bytes());
    let mut tail = [b'0'; 6];
    for slot in tail.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    s.extend(tail.iter().map(|&c| c as char));
    s
}

fn render(rows: &[Row]) -> String {
    let alone = rows.iter().find(|r| r.flood == Flood::Alone);
    let ratio = |now: &Lat, then: Option<&Lat>| match then {
        Some(then) if then.q_ms(0.99) > 0.0 => format!("{:.2}", now.q_ms(0.99) / then.q_ms(0.99)),
        _ => "–".into(),
    };
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.flood.label().to_owned(),
                if r.flood == Flood::Alone {
                    "–".into()
                } else {
                    format!("{:.0}/s, {:.0} µs", r.rate, r.cpu_us)
                },
                format!("{} / {}", r.cold.ms(0.5), r.cold.ms(0.99)),
                format!("{} / {}", r.generate.ms(0.5), r.generate.ms(0.99)),
                format!("{} / {}", r.cached.ms(0.5), r.cached.ms(0.99)),
                format!(
                    "{} / {} / {}",
                    ratio(&r.cold, alone.map(|a| &a.cold)),
                    ratio(&r.generate, alone.map(|a| &a.generate)),
                    ratio(&r.cached, alone.map(|a| &a.cached)),
                ),
                format!("**{}**", r.refused),
            ]
        })
        .collect();
    let answers: String = rows
        .iter()
        .filter(|r| r.flood != Flood::Alone)
        .map(|r| {
            let list: Vec<String> = r
                .answers
                .iter()
                .map(|(k, v)| format!("{k} × {v}"))
                .collect();
            format!("- {}: {}\n", r.flood.label(), list.join(", "))
        })
        .collect();
    format!(
        "## Legitimate calls under a flood of invalid tokens\n\n\
         One server at the production Argon2 cost, on SQLite. Under each condition, one \
         client makes legitimate calls one at a time: cached `Validate` of one token for the \
         window, then cold `Validate` of {COLD} fresh tokens (generated beforehand, never \
         validated), then {GENERATE} `Generate`s. Beside it, {CALLERS} flooding callers \
         ({FLOOD_CONNS} connections, on a runtime and thread of their own in the benchmark \
         process, at nice 19 so that the probes never wait for the flood's client side) send `Validate` as fast as they are answered. Their rate and the server's \
         CPU per flood call are measured over {}s before the probes start. Targets: no \
         legitimate call refused; cold `Validate`, `Generate` and cached `Validate` p99 \
         within 2× of alone.\n\n{}\n\
         How the server answered the floods:\n\n{answers}",
        FLOOD_WINDOW.as_secs(),
        table(
            &[
                "condition",
                "flood rate, server CPU per flood call",
                "cold `Validate` p50 / p99 ms",
                "`Generate` p50 / p99 ms",
                "cached `Validate` p50 / p99 ms",
                "p99 ÷ alone (cold / Generate / cached)",
                "legitimate calls refused",
            ],
            &table_rows
        )
    )
}
