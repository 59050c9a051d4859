//! The load generator: `inflight` loops over `conns` connections, each sending one call at a
//! time for a window, after an unrecorded warm-up on the same connections; latencies are
//! kept whole, in nanoseconds.

use crate::server::Server;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use indicatif::ProgressBar;
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
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
