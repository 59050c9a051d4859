//! The reverse-proxy examples under `deploy/` in front of a service, with jeton deciding.
//!
//! nginx (`deploy/nginx/jeton.conf`) and Caddy (`deploy/caddy/Caddyfile`) really run: each
//! test starts the real `jeton serve` (HTTP front door on), a tiny upstream service that
//! answers with the headers it received and counts the requests that reached it, and the
//! proxy from the committed example with only its addresses replaced. Every case goes through
//! the proxy: good tokens reach the service with jeton's identity headers and without the
//! credential, bad ones are refused with jeton's status and never reach it, and headers a
//! client forges never reach it as sent. Through a relay that counts connections, both keep
//! their connections to jeton open rather than opening one per request.
//!
//! Apache httpd with mod_oauth2 (`deploy/apache/jeton.conf`) really runs too, as an OAuth
//! resource server in front of a static file, asking jeton's RFC 7662 introspection with its
//! own API token as the OAuth client secret (mod_oauth2 sends nothing else).
//!
//! Traefik (`deploy/traefik/`) and Envoy (`deploy/envoy/envoy.yaml`) cannot be installed here:
//! their examples are read as text, and what they would ask jeton (the forward-auth URL, the
//! ext_authz context extensions) is asked of a real server.

use crate::helpers::{
    ADMIN, HttpAnswer, Meta, TENANT, TestApp, Tokens, Transport, generate_req, http,
};
use crate::logs::{JETON, bootstrap, connect};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use jeton::grpc::proto::{self, Namespace, token_service_client::TokenServiceClient};
use jeton_testkit::served::Served;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tempfile::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The identity headers jeton sets for the upstream, lower-case.
const IDENTITY: [&str; 4] = [
    "x-jeton-tenant",
    "x-jeton-subject",
    "x-jeton-token-id",
    "x-jeton-scopes",
];

/// Headers every request through a proxy carries, as a client forging an identity would.
const FORGED: [(&str, &str); 3] = [
    ("X-Jeton-Tenant", "evil"),
    ("X-Jeton-Scopes", "read,write,admin"),
    ("X-Jeton-Principal", "contoso/admin@contoso.com"),
];

/// How long the expiring token lives: long enough for its first use to pass through the
/// proxy on a loaded machine.
const EXPIRY: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------
// The proxies, started from the committed examples.

/// A proxy whose example the tests run.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
    /// Apache httpd with mod_oauth2, serving [`STATIC_FILE`].
    Apache,
}

/// Where Debian's mod_oauth2 is, which the Apache example loads.
const MOD_OAUTH2: &str = "/usr/lib/apache2/modules/mod_oauth2.so";

/// The file the Apache example serves (under its `htdocs`), and its content.
const STATIC_FILE: (&str, &str) = ("reports.txt", "quarterly figures\n");

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Apache => "apache2",
        }
    }

    /// The committed example, relative to the repository.
    fn example(self) -> &'static str {
        match self {
            Kind::Nginx => "deploy/nginx/jeton.conf",
            Kind::Caddy => "deploy/caddy/Caddyfile",
            Kind::Apache => "deploy/apache/jeton.conf",
        }
    }

    /// What the test replaces in the example: (as written in the file, the test's own).
    /// The examples listen on 127.0.0.1:8000 (Caddy: `:8000` bound to 127.0.0.1), reach
    /// jeton's HTTP listener at 127.0.0.1:8080 and the service at 127.0.0.1:3000 (Apache
    /// serves files: no service).
    fn addresses(
        self,
        listen: u16,
        jeton: SocketAddr,
        service: Option<SocketAddr>,
    ) -> Vec<(&'static str, String)> {
        let listen = match self {
            Kind::Nginx => (
                "listen 127.0.0.1:8000;",
                format!("listen 127.0.0.1:{listen};"),
            ),
            Kind::Caddy => (":8000 {", format!(":{listen} {{")),
            Kind::Apache => (
                "Listen 127.0.0.1:8000",
                format!("Listen 127.0.0.1:{listen}"),
            ),
        };
        let mut addresses = vec![listen, ("127.0.0.1:8080", jeton.to_string())];
        addresses.extend(service.map(|s| ("127.0.0.1:3000", s.to_string())));
        addresses
    }

    /// The command that runs `config` in the foreground, its state under `dir`.
    fn command(self, program: &Path, config: &Path, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        match self {
            // -p: the prefix of the example's relative paths (pid, temporary files); -e:
            // the log before the configuration is read (else /var/log/nginx).
            Kind::Nginx => cmd
                .arg("-p")
                .arg(dir)
                .args(["-e", "stderr", "-c"])
                .arg(config),
            // Caddy keeps its state (autosaved configuration, instance id) under these.
            Kind::Caddy => cmd
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(config)
                .env("HOME", dir)
                .env("XDG_CONFIG_HOME", dir)
                .env("XDG_DATA_HOME", dir),
            // -X: one process in the foreground; -d: the ServerRoot, under which the
            // example's relative paths (htdocs, pid file) are.
            Kind::Apache => cmd.arg("-X").arg("-d").arg(dir).arg("-f").arg(config),
        };
        cmd.current_dir(dir);
        cmd
    }

    /// Whether a refusal reaches the client with jeton's JSON body (nginx answers its own
    /// error page; both pass jeton's status, and `WWW-Authenticate` on a 401).
    fn relays_jetons_body(self) -> bool {
        matches!(self, Kind::Caddy)
    }
}

/// How to install what these tests run.
const INSTALL: &str = "`.ci/run` installs them; on Debian or Ubuntu: apt-get update && \
                       apt-get install -y nginx caddy apache2 libapache2-mod-oauth2";

/// `program` on the PATH (or in /usr/sbin, where Debian puts nginx and apache2 and which a
/// non-root PATH lacks); a test that needs it fails without it, never skips.
fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed: these tests run the real nginx, Caddy and Apache \
                 (with mod_oauth2) on the examples in deploy/. {INSTALL}"
            )
        })
}

/// The committed example at `path` with its addresses replaced. Each address must be in the
/// file: an example edited away from what the test replaces fails here, not as a timeout.
fn render(path: &str, addresses: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    for (written, actual) in addresses {
        assert!(
            text.contains(written),
            "{path} no longer contains {written:?}, the address the test replaces"
        );
        text = text.replace(written, actual);
    }
    text
}

/// A port free a moment ago (bound, then released for the proxy to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy process running an example; stopped (and its workers with it) when dropped.
struct RunningProxy {
    kind: Kind,
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl RunningProxy {
    /// Starts `kind`'s example in front of `service`, asking `jeton` (its HTTP listener), and
    /// waits until it accepts connections.
    fn start(kind: Kind, jeton: SocketAddr, service: SocketAddr) -> Self {
        Self::start_with(kind, jeton, Some(service), &[], &[])
    }

    /// [`RunningProxy::start`], with more of the example replaced (`also`, as in
    /// [`render`]) and variables in the proxy's environment.
    fn start_with(
        kind: Kind,
        jeton: SocketAddr,
        service: Option<SocketAddr>,
        also: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> Self {
        let program = require(kind.program());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join(
            Path::new(kind.example())
                .file_name()
                .expect("the example is a file"),
        );
        let mut replaced: Vec<(&str, String)> = kind.addresses(port, jeton, service);
        replaced.extend(also.iter().cloned());
        std::fs::write(&config, render(kind.example(), &replaced)).unwrap();
        if let Kind::Apache = kind {
            let htdocs = dir.path().join("htdocs");
            std::fs::create_dir(&htdocs).unwrap();
            std::fs::write(htdocs.join(STATIC_FILE.0), STATIC_FILE.1).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let child = kind
            .command(&program, &config, dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut proxy = Self {
            kind,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        proxy.wait_until_listening(Duration::from_secs(30));
        proxy
    }

    fn wait_until_listening(&mut self, within: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{:?} exited at start ({status}):\n{}",
                    self.kind,
                    self.log()
                );
            }
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{:?} not listening on {} within {within:?}:\n{}",
                self.kind,
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the proxy printed.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// SIGTERM (nginx's master then stops its workers), SIGKILL if it lingers.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// The protected service and jeton.

/// The protected service: answers every request 200 with the headers it received, one
/// `name: value` a line (names lower-case), and counts the requests that reached it.
struct Upstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::answer(stream, counter.clone()));
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// One request a connection (`Connection: close`): read the head and any body, count it,
    /// answer with the headers.
    async fn answer(mut stream: tokio::net::TcpStream, requests: Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while raw.len() < head_end + 4 + length {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let body: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A token generated for a case.
struct Minted {
    id: String,
    secret: String,
}

/// The real `jeton serve` on a fresh SQLite file with tenant TENANT (admin ADMIN), its gRPC
/// port and its HTTP front door both on port 0.
struct Jeton {
    served: Served,
    http: SocketAddr,
    admin: String,
    /// The database URL, for `jeton bootstrap` of another tenant.
    db: String,
    _dir: TempDir,
}

impl Jeton {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("jeton.db").display());
        let (admin, _) = bootstrap(&db, TENANT, ADMIN, "warn");
        let mut cmd = Command::new(JETON);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", &db)
        .env("JETON_LOG", "info")
        .env("JETON_LOG_FORMAT", "json");
        let served = Served::start(cmd);
        // Logged before "jeton listening", which Served waited for.
        let http = http_listening(&served.log());
        Self {
            served,
            http,
            admin,
            db,
            _dir: dir,
        }
    }

    async fn tokens(&self) -> Tokens {
        TokenServiceClient::with_interceptor(
            connect(self.served.addr()).await,
            Meta::bearer(&self.admin),
        )
    }

    async fn generate(&self, req: proto::GenerateRequest) -> Minted {
        let g = self
            .tokens()
            .await
            .generate(req)
            .await
            .unwrap()
            .into_inner();
        Minted {
            id: g.token.unwrap().id,
            secret: g.secret,
        }
    }

    async fn revoke(&self, token: &Minted) {
        self.tokens()
            .await
            .revoke(proto::RevokeRequest {
                id: token.id.clone(),
            })
            .await
            .unwrap();
    }
}

/// The address on the "http listening" line of a JSON (`"addr":"…"`) or text (`addr=…`) log.
fn http_listening(log: &str) -> SocketAddr {
    let line = log
        .lines()
        .find(|l| l.contains("http listening"))
        .unwrap_or_else(|| panic!("no \"http listening\" line in:\n{log}"));
    let addr = match line.split("\"addr\":\"").nth(1) {
        Some(rest) => rest.split('"').next(),
        None => line
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()),
    };
    addr.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address on {line:?}"))
}

// ---------------------------------------------------------------------------------------
// Requests through a proxy, and what they must prove.

/// Jeton, the service and a proxy in front of it.
struct Stack {
    kind: Kind,
    jeton: Jeton,
    upstream: Upstream,
    proxy: RunningProxy,
}

/// What one request through the proxy got, and whether it reached the service.
struct Outcome {
    answer: HttpAnswer,
    reached: bool,
}

impl Stack {
    async fn start(kind: Kind) -> Self {
        require(kind.program()); // before anything is started
        let jeton = Jeton::start();
        let upstream = Upstream::start().await;
        let proxy = RunningProxy::start(kind, jeton.http, upstream.addr);
        Self {
            kind,
            jeton,
            upstream,
            proxy,
        }
    }

    /// GET `target` through the proxy with `authorization` (if any) and the forged headers.
    async fn get(&self, target: &str, authorization: Option<&str>) -> Outcome {
        let before = self.upstream.requests();
        let mut headers: Vec<(&str, &str)> = FORGED.to_vec();
        headers.extend(authorization.map(|a| ("Authorization", a)));
        let answer = http(self.proxy.addr, "GET", target, &headers, "").await;
        Outcome {
            reached: self.upstream.requests() != before,
            answer,
        }
    }

    /// `token` passes: the service sees jeton's identity headers (not the forged ones), no
    /// credential, no `x-jeton-principal`.
    async fn assert_allowed(&self, what: &str, authorization: &str, token: &Minted) {
        let Outcome { answer, reached } = self.get("/reports?page=2", Some(authorization)).await;
        let ctx = format!("{:?}, {what}: {answer:?}\n{}", self.kind, self.proxy.log());
        assert_eq!(answer.status, 200, "{ctx}");
        assert!(reached, "the service got it: {ctx}");
        let seen: Vec<(&str, &str)> = answer
            .body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .collect();
        let values = |name: &str| -> Vec<&str> {
            seen.iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .collect()
        };
        let expected = [TENANT, ADMIN, token.id.as_str(), "read"];
        for (name, value) in IDENTITY.into_iter().zip(expected) {
            assert_eq!(values(name), [value], "{name}, once and jeton's: {ctx}");
        }
        for name in ["authorization", "x-jeton-principal"] {
            assert!(
                values(name).is_empty(),
                "no {name} reaches the service: {ctx}"
            );
        }
        for (name, forged) in FORGED {
            let name = name.to_ascii_lowercase();
            assert!(
                !values(&name).contains(&forged),
                "the client's {name} does not reach the service: {ctx}"
            );
        }
    }

    /// The request is refused with `status` and never reaches the service.
    async fn assert_refused(&self, refusal: &Refusal) {
        let Refusal {
            what,
            target,
            status,
            reason,
            ..
        } = refusal;
        let Outcome { answer, reached } = self.get(target, refusal.authorization.as_deref()).await;
        let ctx = format!("{:?}, {what}: {answer:?}\n{}", self.kind, self.proxy.log());
        assert_eq!(answer.status, *status, "{ctx}");
        assert!(!reached, "the service never sees it: {ctx}");
        if *status == 401 {
            let challenge = answer.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
                "jeton's challenge is passed on: {ctx}"
            );
        }
        if self.kind.relays_jetons_body() {
            assert!(
                answer.body.contains(&format!("\"reason\":\"{reason}\"")),
                "jeton's reason {reason} is passed on: {ctx}"
            );
        }
        if let Some(a) = &refusal.authorization {
            let token = a.split_whitespace().last().unwrap();
            assert!(
                !answer.body.contains(token),
                "the token is never echoed: {ctx}"
            );
        }
    }
}

/// A request the proxy must refuse.
struct Refusal {
    what: &'static str,
    target: &'static str,
    authorization: Option<String>,
    status: u16,
    /// jeton's reason, in its JSON body.
    reason: &'static str,
}

/// The cases, for one proxy: the example route needs namespace api and scope read.
async fn only_what_jeton_accepts_passes(kind: Kind) {
    // Arrange
    let stack = Stack::start(kind).await;
    let jeton = &stack.jeton;
    let read = |name| generate_req(name, &["read"]);
    let ok = |t: &Minted, scheme: &str| format!("{scheme} {}", t.secret);
    // First, and used at once, so that its lifetime runs out during the other cases.
    let expiring = jeton
        .generate(proto::GenerateRequest {
            expire_time: Some((SystemTime::now() + EXPIRY).into()),
            ..read("expiring")
        })
        .await;
    let expires = Instant::now() + EXPIRY;
    stack
        .assert_allowed(
            "the expiring token, before it expires",
            &ok(&expiring, "Bearer"),
            &expiring,
        )
        .await;
    let reader = jeton.generate(read("reader")).await;
    let doomed = jeton.generate(read("doomed")).await;
    let write_only = jeton.generate(generate_req("writer", &["write"])).await;
    let siem = jeton
        .generate(proto::GenerateRequest {
            namespace: Namespace::Siem as i32,
            subject: "splunk-forwarder-1".into(),
            ..read("siem agent")
        })
        .await;
    let bearer = |t: &Minted| Some(format!("Bearer {}", t.secret));
    let unknown = crate::tokens::forge(&format!("jta_{}{}", "R".repeat(22), "B".repeat(43)));
    let refusals = [
        Refusal {
            what: "no credential",
            target: "/reports",
            authorization: None,
            status: 401,
            reason: "missing",
        },
        Refusal {
            what: "another scheme",
            target: "/reports",
            authorization: Some("Basic YWRtaW46YWRtaW4=".into()),
            status: 401,
            reason: "missing",
        },
        Refusal {
            what: "a malformed token",
            target: "/reports",
            authorization: Some("Bearer jta_not-a-token".into()),
            status: 401,
            reason: "malformed",
        },
        Refusal {
            what: "a well-formed token jeton never issued",
            target: "/reports",
            authorization: Some(format!("Bearer {unknown}")),
            status: 401,
            reason: "not_found",
        },
        Refusal {
            what: "a token of another namespace (SIEM)",
            target: "/reports",
            authorization: bearer(&siem),
            status: 401,
            reason: "wrong_namespace",
        },
        Refusal {
            what: "a SIEM token, the client's query naming siem (the route's query decides)",
            target: "/reports?namespace=siem&scopes=",
            authorization: bearer(&siem),
            status: 401,
            reason: "wrong_namespace",
        },
        Refusal {
            what: "a token without scope read",
            target: "/reports",
            authorization: bearer(&write_only),
            status: 403,
            reason: "insufficient_scope",
        },
        Refusal {
            what: "a token without scope read, the client's query asking none",
            target: "/reports?namespace=api&scopes=",
            authorization: bearer(&write_only),
            status: 403,
            reason: "insufficient_scope",
        },
    ];

    // Act and assert: good tokens pass, in both schemes jeton reads.
    stack
        .assert_allowed("a token with scope read", &ok(&reader, "Bearer"), &reader)
        .await;
    stack
        .assert_allowed("the `Token` scheme", &ok(&reader, "Token"), &reader)
        .await;

    // Bad ones never reach the service.
    for refusal in &refusals {
        stack.assert_refused(refusal).await;
    }

    // Revoked: the very next request after Revoke is refused (jeton had the token cached).
    stack
        .assert_allowed(
            "the token about to be revoked",
            &ok(&doomed, "Bearer"),
            &doomed,
        )
        .await;
    jeton.revoke(&doomed).await;
    stack
        .assert_refused(&Refusal {
            what: "the request right after its token was revoked",
            target: "/reports",
            authorization: bearer(&doomed),
            status: 401,
            reason: "revoked",
        })
        .await;

    // Expired: refused once its expire_time has passed.
    tokio::time::sleep(
        expires.saturating_duration_since(Instant::now()) + Duration::from_millis(500),
    )
    .await;
    stack
        .assert_refused(&Refusal {
            what: "a token past its expire_time",
            target: "/reports",
            authorization: bearer(&expiring),
            status: 401,
            reason: "expired",
        })
        .await;
}

// Multi-threaded: starting processes and waiting for them blocks a thread.
#[tokio::test(flavor = "multi_thread")]
async fn the_nginx_example_lets_through_only_what_jeton_accepts() {
    only_what_jeton_accepts_passes(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caddy_example_lets_through_only_what_jeton_accepts() {
    only_what_jeton_accepts_passes(Kind::Caddy).await;
}

// ---------------------------------------------------------------------------------------
// Connections to jeton: kept open, not one per request.

/// A TCP relay in front of jeton's HTTP listener that counts the connections made to it.
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests in a row through the proxy for the connection test.
const IN_A_ROW: usize = 20;

/// `kind`'s example, asking jeton through a [`Relay`]: [`IN_A_ROW`] good requests one after
/// the other open one connection to jeton (two at most, should jeton close an idle one in
/// between), not one each.
async fn keeps_its_connections_to_jeton_open(kind: Kind) {
    // Arrange
    require(kind.program());
    let jeton = Jeton::start();
    let upstream = Upstream::start().await;
    let relay = Relay::start(jeton.http).await;
    let proxy = RunningProxy::start(kind, relay.addr, upstream.addr);
    let reader = jeton.generate(generate_req("reader", &["read"])).await;
    let bearer = format!("Bearer {}", reader.secret);

    // Act
    for i in 0..IN_A_ROW {
        let answer = http(
            proxy.addr,
            "GET",
            "/reports",
            &[("Authorization", &bearer)],
            "",
        )
        .await;
        assert_eq!(
            answer.status,
            200,
            "{kind:?}, request {i}: {answer:?}\n{}",
            proxy.log()
        );
    }

    // Assert
    assert_eq!(
        upstream.requests(),
        IN_A_ROW,
        "{kind:?}: every request passed"
    );
    let opened = relay.accepted();
    assert!(
        (1..=2).contains(&opened),
        "{kind:?}: {opened} connections to jeton for {IN_A_ROW} requests in a row \
         (keep-alive to jeton is off)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nginx_example_keeps_its_connections_to_jeton_open() {
    keeps_its_connections_to_jeton_open(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caddy_example_keeps_its_connections_to_jeton_open() {
    keeps_its_connections_to_jeton_open(Kind::Caddy).await;
}

// ---------------------------------------------------------------------------------------
// Apache httpd with mod_oauth2: introspection with client credentials.

/// GET the static file through Apache with `authorization` (if any).
async fn get_file(proxy: &RunningProxy, authorization: Option<&str>) -> HttpAnswer {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    http(
        proxy.addr,
        "GET",
        &format!("/{}", STATIC_FILE.0),
        &headers,
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apache_mod_oauth2_example_serves_only_tokens_jeton_finds_active() {
    // Arrange
    require(Kind::Apache.program());
    assert!(
        Path::new(MOD_OAUTH2).is_file(),
        "{MOD_OAUTH2} is missing: the Apache example loads mod_oauth2. {INSTALL}"
    );
    let jeton = Jeton::start();
    let (fabrikam_admin, _) = bootstrap(&jeton.db, "fabrikam", "boss@fabrikam.com", "warn");
    let unknown = crate::tokens::forge(&format!("jta_{}{}", "A".repeat(22), "P".repeat(43)));
    let bearer = |token: &str| format!("Bearer {token}");

    // Both ways mod_oauth2 can present its client secret (the example's, and the other).
    for method in ["client_secret_basic", "client_secret_post"] {
        let own = jeton.generate(generate_req("apache", &[])).await;
        let proxy = RunningProxy::start_with(
            Kind::Apache,
            jeton.http,
            None,
            &[("client_secret_basic", method.to_owned())],
            &[("OAUTH2_CLIENT_SECRET", &own.secret)],
        );
        let ctx = |what: &str, answer: &HttpAnswer| {
            format!("{method}, {what}: {answer:?}\n{}", proxy.log())
        };
        let good = jeton.generate(generate_req("good", &["read"])).await;
        let doomed = jeton.generate(generate_req("doomed", &[])).await;

        // Act and assert: a live token of Apache's tenant gets the file.
        let answer = get_file(&proxy, Some(&bearer(&good.secret))).await;
        assert_eq!(answer.status, 200, "{}", ctx("a live token", &answer));
        assert_eq!(
            answer.body,
            STATIC_FILE.1,
            "{}",
            ctx("a live token", &answer)
        );

        // No token, or one jeton does not find active: 401 with a Bearer challenge.
        let jta_garbage = bearer("jta_not-a-token");
        let unknown = bearer(&unknown);
        let foreign = bearer(&fabrikam_admin);
        for (what, authorization) in [
            ("no token", None),
            ("a malformed token", Some(jta_garbage.as_str())),
            (
                "a forged token (real format, never issued)",
                Some(unknown.as_str()),
            ),
            ("another tenant's live token", Some(foreign.as_str())),
        ] {
            let answer = get_file(&proxy, authorization).await;
            assert_eq!(answer.status, 401, "{}", ctx(what, &answer));
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{}",
                ctx(what, &answer)
            );
            assert!(
                !answer.body.contains(STATIC_FILE.1),
                "{}",
                ctx(what, &answer)
            );
        }

        // Revoked: refused from the very next request (mod_oauth2 caches nothing here).
        let answer = get_file(&proxy, Some(&bearer(&doomed.secret))).await;
        assert_eq!(answer.status, 200, "{}", ctx("before revocation", &answer));
        jeton.revoke(&doomed).await;
        let answer = get_file(&proxy, Some(&bearer(&doomed.secret))).await;
        assert_eq!(
            answer.status,
            401,
            "{}",
            ctx("right after revocation", &answer)
        );

        // Apache's own token revoked: nothing passes any more (fails closed).
        jeton.revoke(&own).await;
        let answer = get_file(&proxy, Some(&bearer(&good.secret))).await;
        assert_eq!(
            answer.status,
            401,
            "{}",
            ctx("Apache's token revoked", &answer)
        );
    }
}

// ---------------------------------------------------------------------------------------
// The examples that cannot run here, read as text and checked against a real server.

/// A YAML file read as text: enough to find a key's value or the block under a line, without
/// a YAML parser. Comments and blank lines are dropped.
struct YamlText {
    path: String,
    /// (indentation, content) of each line.
    lines: Vec<(usize, String)>,
}

impl YamlText {
    fn read(path: &str) -> Self {
        let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
        let lines = text
            .lines()
            .map(|l| l.split(" #").next().unwrap().trim_end())
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| (l.len() - l.trim_start().len(), l.trim_start().to_owned()))
            .collect();
        Self {
            path: path.to_owned(),
            lines,
        }
    }

    fn position(&self, start: &str) -> Option<usize> {
        self.lines.iter().position(|(_, l)| l.starts_with(start))
    }

    /// The lines nested under the first line starting with `start` (a key, or a list item
    /// such as `- name: jeton`).
    fn under(&self, start: &str) -> YamlText {
        let i = self
            .position(start)
            .unwrap_or_else(|| panic!("{}: no line starting with {start:?}", self.path));
        let indent = self.lines[i].0;
        let lines = self.lines[i + 1..]
            .iter()
            .take_while(|(n, _)| *n > indent)
            .cloned()
            .collect();
        YamlText {
            path: format!("{} under {start:?}", self.path),
            lines,
        }
    }

    /// The value after the first `key:` (quotes removed; "" when it opens a block).
    fn value(&self, key: &str) -> String {
        let prefix = format!("{key}:");
        let line = self
            .lines
            .iter()
            .map(|(_, l)| l.trim_start_matches("- "))
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{}: no {key:?}", self.path));
        line[prefix.len()..]
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_owned()
    }

    /// The items of the list under `key:`.
    fn items(&self, key: &str) -> Vec<String> {
        self.under(&format!("{key}:"))
            .lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("- "))
            .map(|i| i.trim_matches(|c| c == '"' || c == '\'').to_owned())
            .collect()
    }

    /// The `key: value` entries of the mapping under `key:`.
    fn entries(&self, key: &str) -> BTreeMap<String, String> {
        self.under(&format!("{key}:"))
            .lines
            .iter()
            .filter_map(|(_, l)| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect()
    }

    fn has_key(&self, key: &str) -> bool {
        let prefix = format!("{key}:");
        self.lines
            .iter()
            .any(|(_, l)| l.trim_start_matches("- ").starts_with(&prefix))
    }
}

/// A plaintext in-process server with the HTTP front door, and tokens with and without the
/// scope the examples' routes need.
async fn server_and_tokens() -> (TestApp, String, String) {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut admin = app.tokens(&app.admin).await;
    let mut secrets = Vec::new();
    for (name, scope) in [("reader", "read"), ("writer", "write")] {
        let g = admin.generate(generate_req(name, &[scope])).await.unwrap();
        secrets.push(g.into_inner().secret);
    }
    let writer = secrets.pop().unwrap();
    let reader = secrets.pop().unwrap();
    (app, reader, writer)
}

#[tokio::test]
async fn the_traefik_example_asks_jeton_what_its_route_needs_and_copies_every_identity_header() {
    // Arrange
    let dynamic = YamlText::read("deploy/traefik/dynamic.yaml");
    let static_config = YamlText::read("deploy/traefik/traefik.yaml");
    let forward_auth = dynamic.under("forwardAuth:");
    let address = forward_auth.value("address");
    let copied: BTreeSet<String> = forward_auth
        .items("authResponseHeaders")
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let (app, reader, writer) = server_and_tokens().await;

    // Assert: the file's structure.
    let (origin, route) = address.split_at(address.find("/v1/").expect("a path in the address"));
    assert_eq!(
        origin, "http://jeton:8080",
        "jeton's HTTP listener, plaintext"
    );
    assert_eq!(route, "/v1/forward-auth?namespace=api&scopes=read");
    assert_eq!(
        copied,
        BTreeSet::from(IDENTITY.map(str::to_owned)),
        "authResponseHeaders"
    );
    assert_eq!(
        forward_auth.value("trustForwardHeader"),
        "false",
        "client X-Forwarded-* are not trusted"
    );
    let router = dynamic.under("routers:");
    let middlewares = router.items("middlewares");
    let strip = &middlewares[1];
    assert_eq!(
        middlewares[0], "jeton",
        "jeton first, then the strip: {middlewares:?}"
    );
    let stripped = dynamic
        .under(&format!("{strip}:"))
        .entries("customRequestHeaders");
    for header in ["Authorization", "X-Jeton-Principal"] {
        assert_eq!(
            stripped.get(header).map(String::as_str),
            Some(""),
            "{strip} removes {header}: {stripped:?}"
        );
    }
    let service = router.value("service");
    assert!(
        dynamic.under("services:").has_key(&service),
        "service {service} defined"
    );
    assert_eq!(
        static_config.under("file:").value("filename"),
        "deploy/traefik/dynamic.yaml",
        "the static file names the dynamic one"
    );
    for entry in router.items("entryPoints") {
        assert!(
            static_config.under("entryPoints:").has_key(&entry),
            "entry point {entry} defined in the static file"
        );
    }

    // Act and assert: what Traefik would ask, asked of a real server (Traefik copies the
    // client's headers, the token among them, to the auth request).
    let http_addr = app.http.unwrap();
    let ask = |token: String| async move {
        let bearer = format!("Bearer {token}");
        http(http_addr, "GET", route, &[("authorization", &bearer)], "").await
    };
    let allowed = ask(reader).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let set: BTreeSet<String> = allowed
        .headers
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k.starts_with("x-jeton-"))
        .collect();
    assert_eq!(
        set, copied,
        "authResponseHeaders copies every header jeton sets"
    );
    assert_eq!(allowed.header("x-jeton-tenant"), Some(TENANT));
    let refused = ask(writer).await;
    assert_eq!(refused.status, 403, "the route needs read: {refused:?}");
}

#[tokio::test]
async fn the_envoy_example_asks_jeton_over_grpc_with_the_extensions_it_reads() {
    // Arrange
    let envoy = YamlText::read("deploy/envoy/envoy.yaml");
    let filters = envoy.under("http_filters:");
    let authz = filters.under("- name: envoy.filters.http.ext_authz");
    let extensions: HashMap<String, String> = envoy
        .under("typed_per_filter_config:")
        .under("envoy.filters.http.ext_authz:")
        .entries("context_extensions")
        .into_iter()
        .collect();
    let (app, reader, writer) = server_and_tokens().await;

    // Assert: the file's structure.
    assert!(
        authz
            .lines
            .iter()
            .any(|(_, l)| l.ends_with("ext_authz.v3.ExtAuthz")),
        "the v3 ext_authz filter: {:?}",
        authz.lines
    );
    assert_eq!(authz.value("transport_api_version"), "V3");
    assert_eq!(authz.value("failure_mode_allow"), "false", "fails closed");
    assert_eq!(authz.value("envoy_grpc"), "{cluster_name: jeton}");
    assert!(
        !envoy.has_key("with_request_body"),
        "jeton reads headers only: no body is buffered for it"
    );
    let position = |name: &str| {
        filters
            .position(&format!("- name: {name}"))
            .unwrap_or_else(|| panic!("http filter {name}"))
    };
    assert!(
        position("envoy.filters.http.ext_authz") < position("envoy.filters.http.router"),
        "ext_authz runs before the router"
    );
    let cluster = envoy.under("clusters:").under("- name: jeton");
    assert!(
        cluster
            .value("socket_address")
            .contains("port_value: 50051"),
        "jeton's gRPC port"
    );
    assert!(
        cluster.has_key("http2_protocol_options"),
        "gRPC needs HTTP/2"
    );
    assert_eq!(
        extensions,
        HashMap::from([
            ("jeton.namespace".to_owned(), "api".to_owned()),
            ("jeton.required_scopes".to_owned(), "read".to_owned()),
        ]),
        "the route's context extensions: the keys jeton reads"
    );

    // Act and assert: the Check Envoy would send for this route, sent to a real server.
    let check = |token: String| {
        let extensions = extensions.clone();
        let channel = app.channel();
        async move {
            let request = CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(attribute_context::Request {
                        http: Some(attribute_context::HttpRequest {
                            headers: HashMap::from([(
                                "authorization".to_owned(),
                                format!("Bearer {token}"),
                            )]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    context_extensions: extensions,
                    ..Default::default()
                }),
            };
            AuthorizationClient::new(channel.await)
                .check(request)
                .await
                .expect("jeton accepts the route's extensions")
                .into_inner()
        }
    };
    match check(reader).await.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            let set: BTreeSet<&str> = ok
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| h.key.as_str())
                .collect();
            assert_eq!(set, BTreeSet::from(IDENTITY));
            assert!(ok.headers_to_remove.contains(&"authorization".to_owned()));
        }
        other => panic!("a token with read passes: {other:?}"),
    }
    match check(writer).await.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => {
            assert_eq!(
                denied.status.map(|s| s.code),
                Some(403),
                "the route needs read"
            );
        }
        other => panic!("a token without read is refused: {other:?}"),
    }
}

/// The front-door guide's nginx lines are the example's: every line of its ```nginx block
/// (trimmed) is a line of `deploy/nginx/jeton.conf`, which the test above runs with a real
/// nginx.
#[test]
fn the_guides_nginx_lines_are_in_the_example_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/front-door.md")).unwrap();
    let example = std::fs::read_to_string(root.join(Kind::Nginx.example())).unwrap();
    let example: std::collections::HashSet<&str> = example.lines().map(str::trim).collect();
    let block = readme
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/front-door.md shows an nginx block");
    let lines: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() >= 10, "{lines:?}");
    for line in lines {
        assert!(
            example.contains(line),
            "docs/front-door.md's nginx line {line:?} is not in {}",
            Kind::Nginx.example()
        );
    }
}
