//! The load generator. Closed loop ([`run`]): `inflight` loops over `conns` connections, each
//! sending one call at a time for a window, after an unrecorded warm-up on the same
//! connections. Open loop ([`paced`]): calls sent on a fixed schedule whatever the answers,
//! each timed from when it was due. Latencies are kept whole, in nanoseconds.

use crate::server::Server;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use indicatif::ProgressBar;
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Latencies, sorted, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Lat(Vec<u64>);

impl Lat {
    pub fn new(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Self(ns)
    }

    /// All the latencies of `lats`, together.
    pub fn pooled<'a>(lats: impl IntoIterator<Item = &'a Lat>) -> Self {
        Self::new(lats.into_iter().flat_map(|l| l.0.iter().copied()).collect())
    }

    /// The `p` quantile (nearest rank), in milliseconds; 0 when empty.
    pub fn q_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        self.0[i] as f64 / 1e6
    }

    pub fn ms(&self, p: f64) -> String {
        format!("{:.3}", self.q_ms(p))
    }

    pub fn max_ms(&self) -> f64 {
        self.q_ms(1.0)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `Validate` of the tokens, round-robin.
    Validate,
    /// `grpc.health.v1.Health/Check` for "jeton.v1.TokenService": the same server's
    /// cheapest RPC.
    Empty,
    /// Envoy's `Authorization/Check` with the token as a bearer header, on the gRPC port.
    ExtAuthz,
    /// `GET /v1/forward-auth` on the HTTP listener, one keep-alive HTTP/1.1 connection per
    /// loop (HTTP/1.1 has one call in flight per connection).
    ForwardAuth,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Call::Validate => "Validate",
            Call::Empty => "empty RPC",
            Call::ExtAuthz => "ext_authz Check",
            Call::ForwardAuth => "forward-auth",
        })
    }
}

/// One measurement window.
pub struct Load<'a> {
    pub call: Call,
    pub tokens: &'a Arc<Vec<String>>,
    pub conns: usize,
    pub inflight: usize,
    /// Calls made before the window on the same connections and not recorded.
    pub warmup: Duration,
    pub window: Duration,
}

/// What one window measured.
pub struct Window {
    /// Calls started within the window.
    pub calls: usize,
    pub window: Duration,
    pub lat: Lat,
    /// Server CPU time over the window (and the completion of the calls in flight at its
    /// end).
    pub cpu: Duration,
}

impl Window {
    pub fn per_sec(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    pub fn cpu_us_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

/// Runs `load` against `server`; fails if any call fails (or a Validate is not valid).
pub async fn run(server: &Server, load: &Load<'_>) -> Result<Window, BoxError> {
    if load.call == Call::Validate && load.tokens.is_empty() {
        return Err("no tokens to validate".into());
    }
    let mut channels = Vec::with_capacity(load.conns);
    for _ in 0..load.conns.max(1) {
        channels.push(server.channel().await?);
    }
    let from = Instant::now() + load.warmup;
    let until = from + load.window;
    let http = match load.call {
        Call::ForwardAuth => Some(
            server
                .http_addr()
                .ok_or("the server has no HTTP listener (--http-listen)")?,
        ),
        _ => None,
    };
    let mut tasks = Vec::new();
    for slot in 0..load.inflight.max(1) {
        let mut client = Client::new(channels[slot % channels.len()].clone());
        if let Some(addr) = &http {
            client.http = Some(HttpConn::open(addr).await?);
        }
        let tokens = load.tokens.clone();
        tasks.push(tokio::spawn(
            client.repeat(load.call, tokens, slot, from, until),
        ));
    }
    tokio::time::sleep_until(from.into()).await;
    let cpu0 = server.cpu();
    let mut all = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await? {
            Ok(lat) => all.extend(lat),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let cpu = server.cpu().saturating_sub(cpu0);
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(Window {
        calls: all.len(),
        window: load.window,
        lat: Lat::new(all),
        cpu,
    })
}

/// One open-loop window: calls due at a constant rate over `conns` connections, sent when
/// due whether or not earlier ones were answered.
pub struct Paced<'a> {
    /// [`Call::Validate`] or [`Call::Empty`] (the gRPC calls).
    pub call: Call,
    pub tokens: &'a Arc<Vec<String>>,
    pub conns: usize,
    /// Calls a second; call `k` is due `k / rate` seconds after the start.
    pub rate: f64,
    /// Calls due before the window, on the same schedule and connections, not recorded.
    pub warmup: Duration,
    pub window: Duration,
}

/// What one open-loop window measured.
pub struct PacedWindow {
    /// Answers received within the window, whenever their calls were due.
    pub answered: usize,
    pub window: Duration,
    /// From when each call due within the window was due to its answer: time the call
    /// waited for the load generator counts, so a stall is not hidden.
    pub lat: Lat,
    /// From when each call due within the window was due to when it was handed to its
    /// connection: how well the load generator kept its schedule.
    pub late: Lat,
    /// Calls in flight at once, at most, when a call due within the window was sent.
    pub most_in_flight: usize,
    /// Server CPU time over the window (and the answers to the calls in flight at its end).
    pub cpu: Duration,
    /// This process's CPU time over the same span: the load generator's.
    pub own_cpu: Duration,
    /// From the window's start to the last answer (later than the window's end when answers
    /// were owed at its end): the span both CPU times cover.
    pub span: Duration,
}

impl PacedWindow {
    pub fn per_sec(&self) -> f64 {
        self.answered as f64 / self.window.as_secs_f64()
    }

    /// Server CPU per call due within the window.
    pub fn cpu_us_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.lat.0.len().max(1) as f64
    }

    /// The load generator's CPU over the window and the answers owed at its end, as a share
    /// of one core.
    pub fn own_busy(&self) -> f64 {
        self.own_cpu.as_secs_f64() / self.span.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Beyond this many calls in flight the load generator stops sending until one is answered;
/// the calls held back still count from when they were due. It is the closed-loop table's
/// most (4 connections × 256), far above what a rate below saturation needs, and it keeps
/// an overloaded server's connections open: h2 (0.4.20) closes a connection with
/// `ENHANCE_YOUR_CALM` ("too_many_data_frames") once a few thousand small request bodies wait
/// unread on it, which 16 384 in flight over 4 connections reached.
pub const MOST_IN_FLIGHT: usize = 1024;
/// An answer still missing this long after the window ends fails the run.
const DRAIN: Duration = Duration::from_secs(60);

/// Runs `load` against `server` on its schedule; fails if any call fails (or a Validate is
/// not valid).
pub async fn paced(server: &Server, load: &Paced<'_>) -> Result<PacedWindow, BoxError> {
    if !matches!(load.call, Call::Validate | Call::Empty) {
        return Err(format!("no open-loop load for {}", load.call).into());
    }
    if load.call == Call::Validate && load.tokens.is_empty() {
        return Err("no tokens to validate".into());
    }
    if !(load.rate.is_finite() && load.rate > 0.0) {
        return Err(format!("cannot send {} calls/s", load.rate).into());
    }
    let mut clients = Vec::with_capacity(load.conns.max(1));
    for _ in 0..load.conns.max(1) {
        let channel = server.channel().await?;
        clients.push((
            TokenServiceClient::new(channel.clone()),
            HealthClient::new(channel),
        ));
    }
    let start = Instant::now();
    let from = start + load.warmup;
    let schedule = Schedule {
        call: load.call,
        tokens: load.tokens.clone(),
        clients,
        start,
        period: 1.0 / load.rate,
        from,
        until: from + load.window,
    };
    // On the worker thread, like the closed loop's loops and the calls it spawns: this
    // function runs on the thread that blocks on the runtime, where every call would cost a
    // wake-up of the worker and another back.
    let sending = tokio::spawn(schedule.run());
    tokio::time::sleep_until(from.into()).await;
    let (cpu0, own0) = (server.cpu(), own_cpu());
    let sent = sending.await??;
    let span = from.elapsed();
    Ok(PacedWindow {
        answered: sent.answered,
        window: load.window,
        lat: Lat::new(sent.lat),
        late: Lat::new(sent.late),
        most_in_flight: sent.most_in_flight,
        cpu: server.cpu().saturating_sub(cpu0),
        own_cpu: own_cpu().saturating_sub(own0),
        span,
    })
}

/// The sending side of an open-loop window.
struct Schedule {
    call: Call,
    tokens: Arc<Vec<String>>,
    clients: Vec<(TokenServiceClient<Channel>, HealthClient<Channel>)>,
    start: Instant,
    /// Seconds between two due times.
    period: f64,
    /// Calls due in `from..until` are recorded.
    from: Instant,
    until: Instant,
}

/// What the sending side saw.
struct Sent {
    /// From due time to answer, of the calls due within the window, nanoseconds.
    lat: Vec<u64>,
    /// From due time to sending, of the same calls.
    late: Vec<u64>,
    /// Answers received within the window.
    answered: usize,
    most_in_flight: usize,
}

impl Schedule {
    async fn run(self) -> Result<Sent, BoxError> {
        let pacer = Pacer::new()?;
        let mut sent = Sent {
            lat: Vec::new(),
            late: Vec::new(),
            answered: 0,
            most_in_flight: 0,
        };
        let mut in_flight = JoinSet::new();
        let mut k: usize = 0;
        loop {
            let due = self.start + Duration::from_secs_f64(k as f64 * self.period);
            if due >= self.until {
                break;
            }
            while let Some(done) = in_flight.try_join_next() {
                self.tally(&mut sent, done??);
            }
            if in_flight.len() >= MOST_IN_FLIGHT {
                if let Some(done) = in_flight.join_next().await {
                    self.tally(&mut sent, done??);
                }
                continue;
            }
            // Every call already due is sent at once, each stamped with its own due time.
            pacer.wait_until(due).await?;
            if due >= self.from {
                sent.late.push(nanos(due.elapsed()));
                sent.most_in_flight = sent.most_in_flight.max(in_flight.len() + 1);
            }
            in_flight.spawn(self.one(k, due));
            k += 1;
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while let Some(done) = in_flight.join_next().await {
                self.tally(&mut sent, done??);
            }
            Ok::<_, BoxError>(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "{} calls still unanswered {} s after the window",
                    in_flight.len(),
                    DRAIN.as_secs()
                )
                .into());
            }
        }
        Ok(sent)
    }

    /// Call `k`, due at `due`: when it was due and when it was answered.
    fn one(
        &self,
        k: usize,
        due: Instant,
    ) -> impl Future<Output = Result<(Instant, Instant), String>> + Send + 'static {
        let (tokens, health) = &self.clients[k % self.clients.len()];
        // Only the client the call needs is cloned: a clone allocates.
        let (mut tokens, mut health) = match self.call {
            Call::Validate => (Some(tokens.clone()), None),
            _ => (None, Some(health.clone())),
        };
        let all = self.tokens.clone();
        async move {
            if let Some(client) = tokens.as_mut() {
                let r = validate(client, &all[k % all.len()]).await?;
                if !r.valid {
                    return Err(format!("Validate answered invalid ({:?})", r.reason()));
                }
            } else if let Some(client) = health.as_mut() {
                client
                    .check(HealthCheckRequest {
                        service: "jeton.v1.TokenService".into(),
                    })
                    .await
                    .map_err(|e| format!("Health/Check failed: {e}"))?;
            }
            Ok((due, Instant::now()))
        }
    }

    fn tally(&self, sent: &mut Sent, answer: (Instant, Instant)) {
        sent.add(self.from..self.until, answer);
    }
}

impl Sent {
    /// One answer to a call due at `due`, received at `done`, for the window `window`: its
    /// latency counts if it was due within the window (whenever it was answered), the answer
    /// counts toward the window's rate if it came within it (whenever it was due).
    fn add(&mut self, window: std::ops::Range<Instant>, (due, done): (Instant, Instant)) {
        if due >= window.start {
            self.lat.push(nanos(done - due));
        }
        if window.contains(&done) {
            self.answered += 1;
        }
    }
}

/// A timer with the kernel's precision for the open loop's schedule: tokio's timer ticks in
/// milliseconds, far coarser than the gaps between calls (100 µs at 10 000 calls/s), and
/// spinning until a due time would take the load generator's core from the answers (and,
/// on a shared machine, lose it to other processes for whole time slices). A `timerfd` in
/// tokio's reactor wakes the runtime at the due time and lets it sleep until then.
struct Pacer {
    fd: AsyncFd<OwnedFd>,
}

impl Pacer {
    fn new() -> std::io::Result<Self> {
        // SAFETY: no pointer is passed; a negative result is an error, reported below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just created and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which closes it only when dropped,
        // so the descriptor stays open and the same for the registration's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Returns at `at` (at once if it has passed). `Instant` is `CLOCK_MONOTONIC` on Linux,
    /// the timer's clock.
    async fn wait_until(&self, at: Instant) -> std::io::Result<()> {
        let wait = at.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(wait.subsec_nanos()),
            },
        };
        // SAFETY: `spec` outlives the call; the old value is not asked for (null).
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: the buffer is 8 writable bytes, the size a timerfd read needs.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            // Read or not, the expiry is consumed: the next wait needs the next edge.
            ready.clear_ready();
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
    }
}

/// User + system CPU time of this process so far (Linux; 10 ms ticks).
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The clients of one loop.
struct Client {
    tokens: TokenServiceClient<Channel>,
    health: HealthClient<Channel>,
    envoy: AuthorizationClient<Channel>,
    http: Option<HttpConn>,
}

impl Client {
    fn new(channel: Channel) -> Self {
        Self {
            tokens: TokenServiceClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
            envoy: AuthorizationClient::new(channel),
            http: None,
        }
    }

    /// Calls one at a time until `until`; returns the latencies of calls started at or after
    /// `from`.
    async fn repeat(
        mut self,
        call: Call,
        tokens: Arc<Vec<String>>,
        slot: usize,
        from: Instant,
        until: Instant,
    ) -> Result<Vec<u64>, String> {
        let mut lat = Vec::with_capacity(4096);
        // Loops start at different tokens so that they do not walk the list in step.
        let mut i = slot.wrapping_mul(7919);
        loop {
            let t0 = Instant::now();
            if t0 >= until {
                return Ok(lat);
            }
            i = i.wrapping_add(1);
            match call {
                Call::Validate => self.validate(&tokens[i % tokens.len()]).await?,
                Call::Empty => self.empty().await?,
                Call::ExtAuthz => self.ext_authz(&tokens[i % tokens.len()]).await?,
                Call::ForwardAuth => self.forward_auth(&tokens[i % tokens.len()]).await?,
            }
            if t0 >= from {
                lat.push(nanos(t0.elapsed()));
            }
        }
    }

    async fn validate(&mut self, token: &str) -> Result<(), String> {
        let r = validate(&mut self.tokens, token).await?;
        if r.valid {
            Ok(())
        } else {
            Err(format!("Validate answered invalid ({:?})", r.reason()))
        }
    }

    async fn ext_authz(&mut self, token: &str) -> Result<(), String> {
        use envoy_types::pb::envoy::service::auth::v3::{
            AttributeContext, CheckRequest, attribute_context, check_response::HttpResponse,
        };
        let headers = [("authorization".to_owned(), format!("Bearer {token}"))].into();
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let res = self
            .envoy
            .check(req)
            .await
            .map_err(|e| format!("Check failed: {e}"))?
            .into_inner();
        match res.http_response {
            Some(HttpResponse::OkResponse(_)) => Ok(()),
            other => Err(format!("Check denied a cached token: {other:?}")),
        }
    }

    async fn forward_auth(&mut self, token: &str) -> Result<(), String> {
        let conn = self.http.as_mut().ok_or("no HTTP connection")?;
        match conn.get_forward_auth(token).await {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("forward-auth answered {status} for a cached token")),
            Err(e) => Err(format!("forward-auth failed: {e}")),
        }
    }

    async fn empty(&mut self) -> Result<(), String> {
        self.health
            .check(HealthCheckRequest {
                service: "jeton.v1.TokenService".into(),
            })
            .await
            .map(|_| ())
            .map_err(|e| format!("Health/Check failed: {e}"))
    }
}

/// One `Validate` of `token`.
pub async fn validate(
    client: &mut TokenServiceClient<Channel>,
    token: &str,
) -> Result<proto::ValidateResponse, String> {
    client
        .validate(proto::ValidateRequest {
            token: token.to_owned(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| format!("Validate failed: {e}"))
}

/// The answer every call of [`validate_each`] must get.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Valid,
    Invalid(proto::Reason),
}

/// Validates every token once, `inflight` at a time over one connection (the warm-up that
/// fills the cache); returns how long it took. Fails on any other answer than `expect`.
pub async fn validate_each(
    server: &Server,
    tokens: &Arc<Vec<String>>,
    inflight: usize,
    expect: Expect,
    bar: &ProgressBar,
) -> Result<Duration, BoxError> {
    let channel = server.channel().await?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..inflight.max(1))
        .map(|_| {
            let (tokens, next, bar) = (tokens.clone(), next.clone(), bar.clone());
            let mut client = TokenServiceClient::new(channel.clone());
            tokio::spawn(async move {
                while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = validate(&mut client, token).await?;
                    let ok = match expect {
                        Expect::Valid => r.valid,
                        Expect::Invalid(reason) => !r.valid && r.reason() == reason,
                    };
                    if !ok {
                        return Err(format!(
                            "expected {expect:?}, got valid={} ({:?})",
                            r.valid,
                            r.reason()
                        ));
                    }
                    bar.inc(1);
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// One keep-alive HTTP/1.1 connection (jeton's HTTP listener answers forward-auth with no
/// body, so a response ends with its header section).
pub struct HttpConn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
    line: String,
}

impl HttpConn {
    pub async fn open(addr: &str) -> Result<Self, BoxError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            stream: tokio::io::BufReader::new(tcp),
            host: addr.to_owned(),
            line: String::new(),
        })
    }

    /// `GET /v1/forward-auth` with `token`; the status code.
    pub async fn get_forward_auth(&mut self, token: &str) -> std::io::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!(
            "GET /v1/forward-auth?namespace=api HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\r\n",
            self.host
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut status = 0;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if status == 0 {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        if length > 0 {
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body).await?;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::{Pacer, Sent};
    use std::time::{Duration, Instant};

    #[test]
    fn latency_counts_from_the_due_time_and_answers_count_where_they_land() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut sent = Sent {
            lat: Vec::new(),
            late: Vec::new(),
            answered: 0,
            most_in_flight: 0,
        };
        // Due in the warm-up, answered in the window: a rate, no latency.
        sent.add(ms(10)..ms(20), (ms(5), ms(12)));
        // Due in the window, answered after it: a latency from the due time, no rate.
        sent.add(ms(10)..ms(20), (ms(15), ms(45)));
        // Due and answered in the window.
        sent.add(ms(10)..ms(20), (ms(11), ms(13)));
        assert_eq!(sent.answered, 2);
        assert_eq!(sent.lat, vec![30_000_000, 2_000_000]);
    }

    #[tokio::test]
    async fn the_pacer_never_returns_before_the_due_time() {
        let pacer = Pacer::new().expect("timerfd");
        for step in [50u64, 300, 2_000] {
            let due = Instant::now() + Duration::from_micros(step);
            pacer.wait_until(due).await.expect("wait");
            assert!(
                Instant::now() >= due,
                "returned before a due time {step} µs ahead"
            );
        }
        // A due time already passed returns at once, without arming the timer.
        pacer
            .wait_until(Instant::now() - Duration::from_millis(1))
            .await
            .expect("past");
    }
}
