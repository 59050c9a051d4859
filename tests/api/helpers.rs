//! Spawning a server and typed helpers for common calls.

use chrono::{TimeZone, Utc};
use jeton::app::{self, Server};
use jeton::config::{BootstrapConfig, ServeConfig};
use jeton::domain::ManualClock;
use jeton::grpc::proto::{
    self, directory_service_client::DirectoryServiceClient,
    token_service_client::TokenServiceClient,
};
use jeton_testkit::postgres::PgDatabase;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// Waits until a round that began after this call has completed for each of `rounds` (the
/// sweepers of several servers): what a sweep would change by now, it has — with a bound,
/// so that a stalled sweeper fails the test instead of hanging it.
pub async fn after_a_full_sweep(rounds: impl IntoIterator<Item = jeton::app::Rounds>) {
    let waits: Vec<_> = rounds.into_iter().map(|r| r.one_more()).collect();
    let all = async {
        for w in waits {
            w.await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), all)
        .await
        .expect("a sweeper completed no round within 10 s");
}

/// docs/contract.md, Replicas: an answer from any replica reflects every change
/// acknowledged more than this before the call reached it.
pub const PROPAGATION: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks `check` until it holds, and returns when the check that held was sent, counted from
/// `since` (taken once the change was acknowledged). A check that does not hold fails the
/// test only if it was *sent* more than [`PROPAGATION`] after `since` (plus 2 ms for the
/// server's millisecond clock): the contract bounds how old an answer may be, which the
/// server enforces on its own clock, not how fast a reply travels on a busy machine.
pub async fn within_propagation<F, Fut>(
    what: &str,
    since: std::time::Instant,
    mut check: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = PROPAGATION + std::time::Duration::from_millis(2);
    loop {
        let sent = since.elapsed();
        if check().await {
            return sent;
        }
        assert!(
            sent < deadline,
            "{what}: a call sent {sent:?} after the change still did not see it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub const TENANT: &str = "contoso";
pub const ADMIN: &str = "admin@contoso.com";

/// Test certificates: a CA for the server and trusted frontends, and a client certificate
/// from another CA that the server must refuse.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    pub rogue_cert: String,
    pub rogue_key: String,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let ca_params = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            p
        };
        let ca =
            CertifiedIssuer::self_signed(ca_params("jeton test CA"), KeyPair::generate().unwrap())
                .unwrap();
        let rogue_ca =
            CertifiedIssuer::self_signed(ca_params("rogue CA"), KeyPair::generate().unwrap())
                .unwrap();
        let leaf = |names: Vec<String>, issuer: &CertifiedIssuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into()], &ca);
        let (client_cert, client_key) = leaf(vec!["portal.contoso.test".into()], &ca);
        let (rogue_cert, rogue_key) = leaf(vec!["portal.contoso.test".into()], &rogue_ca);
        Pki {
            ca: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
            rogue_cert,
            rogue_key,
        }
    })
}

/// Adds fixed metadata to every call.
#[derive(Clone, Default)]
pub struct Meta(Vec<(&'static str, String)>);

impl Meta {
    pub fn bearer(token: &str) -> Self {
        Self(vec![("authorization", format!("Bearer {token}"))])
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }
}

impl Interceptor for Meta {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        for (k, v) in &self.0 {
            let v: MetadataValue<_> = v
                .parse()
                .map_err(|_| Status::internal("bad test metadata"))?;
            req.metadata_mut().insert(*k, v);
        }
        Ok(req)
    }
}

pub type Tokens = TokenServiceClient<InterceptedService<Channel, Meta>>;
pub type Directory = DirectoryServiceClient<InterceptedService<Channel, Meta>>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// TLS, with trusted frontends (client certificates signed by the test CA).
    Tls,
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The HTTP front door, when the test asked for one (`http_listen`).
    pub http: Option<SocketAddr>,
    /// Where its metrics are served, when `metrics_listen` was set.
    pub metrics: Option<SocketAddr>,
    pub clock: Arc<ManualClock>,
    /// The bootstrap token of ADMIN in TENANT.
    pub admin: String,
    pub db_url: String,
    pub transport: Transport,
    dir: TempDir,
    /// The PostgreSQL database this test created; dropped with the test.
    _pg_database: Option<PgDatabase>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// The rounds of this server's sweepers (of its latest start).
    pub sweeps: jeton::app::Sweeps,
}

pub fn test_settings(db_url: &str) -> ServeConfig {
    let mut s = ServeConfig::with_database(db_url).unwrap();
    s.listen = "127.0.0.1:0".parse().unwrap();
    // Cheap Argon2: the tests are about behaviour, the benchmarks about cost.
    s.hash.memory_kib = 256;
    s.hash.iterations = 1;
    // Only List and shutdown flush, so tests see exactly when last-use times are written.
    s.last_use_flush_interval = std::time::Duration::from_secs(3600);
    s
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Transport::Tls, |_| {}).await
    }

    pub async fn spawn_with(transport: Transport, tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::spawn_on(DbEngine::from_env(), transport, tweak).await
    }

    /// A server on `engine`, whatever `JETON_TEST_ENGINE` says (for tests whose subject only
    /// one engine has).
    pub async fn spawn_on(
        engine: DbEngine,
        transport: Transport,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db_url, pg_database) = match engine {
            DbEngine::Sqlite => (
                format!("sqlite://{}", dir.path().join("jeton.db").display()),
                None,
            ),
            DbEngine::Postgres => {
                let db = PgDatabase::create("jeton_test")
                    .await
                    .expect("PostgreSQL reachable");
                (db.url().to_owned(), Some(db))
            }
        };
        Self::spawn_at(dir, db_url, pg_database, transport, tweak).await
    }

    /// A server on the database at `db_url` (made by the test: a PostgreSQL pair, say).
    pub async fn spawn_on_url(
        db_url: String,
        transport: Transport,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        Self::spawn_at(tempfile::tempdir().unwrap(), db_url, None, transport, tweak).await
    }

    async fn spawn_at(
        dir: TempDir,
        db_url: String,
        pg_database: Option<PgDatabase>,
        transport: Transport,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
        ));
        let mut app = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            http: None,
            metrics: None,
            clock,
            admin: String::new(),
            db_url,
            transport,
            dir,
            _pg_database: pg_database,
            stop: None,
            server: None,
            sweeps: Default::default(),
        };
        app.admin = app.bootstrap_tenant(TENANT, ADMIN).await;
        app.start(tweak).await;
        app
    }

    async fn start(&mut self, tweak: impl FnOnce(&mut ServeConfig)) {
        let mut settings = test_settings(&self.db_url);
        if self.transport == Transport::Tls {
            let pki = pki();
            let write = |name: &str, text: &str| -> PathBuf {
                let p = self.dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p
            };
            settings.tls_cert = Some(write("server.pem", &pki.server_cert));
            settings.tls_key = Some(write("server.key", &pki.server_key));
            settings.client_ca = Some(write("ca.pem", &pki.ca));
        }
        tweak(&mut settings);
        let server = Server::build(settings, self.clock.clone()).await.unwrap();
        self.addr = server.local_addr().unwrap();
        self.http = server.http_addr();
        self.metrics = server.metrics_addr();
        self.sweeps = server.sweeps();
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.server = Some(tokio::spawn(async move {
            let stopped = server
                .run(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = stopped {
                panic!(
                    "the server stopped with an error: {}",
                    jeton::telemetry::chain(&e)
                );
            }
        }));
    }

    /// Another replica: a second server, with its own cache and pool, on the same database
    /// and clock.
    pub async fn replica(&self) -> TestApp {
        self.replica_with(self.transport, |_| {}).await
    }

    /// Another replica, on `transport`, with settings of its own.
    pub async fn replica_with(
        &self,
        transport: Transport,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestApp {
        let mut r = TestApp {
            addr: self.addr,
            http: None,
            metrics: None,
            clock: self.clock.clone(),
            admin: self.admin.clone(),
            db_url: self.db_url.clone(),
            transport,
            dir: tempfile::tempdir().unwrap(),
            _pg_database: None,
            stop: None,
            server: None,
            sweeps: Default::default(),
        };
        r.start(tweak).await;
        r
    }

    /// Stops the server gracefully (flushing last-use times) and waits for it.
    pub async fn stop(&mut self) {
        self.signal_stop();
        if let Some(h) = self.server.take() {
            h.await.unwrap();
        }
    }

    /// The PostgreSQL database this test made, if any.
    pub fn pg_database(&self) -> Option<&PgDatabase> {
        self._pg_database.as_ref()
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Whether the server has stopped.
    pub fn is_stopped(&self) -> bool {
        self.server.as_ref().is_none_or(|h| h.is_finished())
    }

    /// What the health service says of `service` (a fresh connection each time).
    pub async fn health(&self, service: &str) -> Result<i32, Status> {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let channel = self
            .endpoint_connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status)
    }

    async fn endpoint_connect(&self) -> Result<Channel, tonic::transport::Error> {
        let mut e = self.endpoint();
        if self.transport == Transport::Tls {
            e = e.tls_config(self.tls())?;
        }
        e.connect().await
    }

    /// Stops and starts again on the same database and clock.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start(|_| {}).await;
    }

    /// Creates another tenant (as `jeton bootstrap` does) and returns its admin's token.
    pub async fn bootstrap_tenant(&self, tenant: &str, admin: &str) -> String {
        let mut config = BootstrapConfig::new(&self.db_url, tenant, admin).unwrap();
        config.hash = test_settings(&self.db_url).hash;
        config.api_url =
            Some(jeton::domain::ApiUrl::parse(&format!("https://{tenant}.api.test")).unwrap());
        app::bootstrap(&config, self.clock.clone()).await.unwrap()
    }

    fn endpoint(&self) -> Endpoint {
        match self.transport {
            Transport::Plain => Endpoint::from_shared(format!("http://{}", self.addr)).unwrap(),
            Transport::Tls => Endpoint::from_shared(format!("https://{}", self.addr)).unwrap(),
        }
    }

    fn tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki().ca))
            .domain_name("localhost")
    }

    /// A connection without a client certificate.
    pub async fn channel(&self) -> Channel {
        let mut e = self.endpoint();
        if self.transport == Transport::Tls {
            e = e.tls_config(self.tls()).unwrap();
        }
        e.connect().await.unwrap()
    }

    /// A connection with a client certificate: the trusted frontend's (or a rogue one's).
    pub async fn frontend_channel(&self, rogue: bool) -> Result<Channel, tonic::transport::Error> {
        let pki = pki();
        let identity = if rogue {
            Identity::from_pem(&pki.rogue_cert, &pki.rogue_key)
        } else {
            Identity::from_pem(&pki.client_cert, &pki.client_key)
        };
        self.endpoint()
            .tls_config(self.tls().identity(identity))?
            .connect()
            .await
    }

    pub async fn tokens_with(&self, meta: Meta) -> Tokens {
        TokenServiceClient::with_interceptor(self.channel().await, meta)
    }

    /// A new token, unscoped, generated by the holder of `bearer`.
    pub async fn mint(&self, bearer: &str, name: &str) -> proto::GenerateResponse {
        self.tokens(bearer)
            .await
            .generate(generate_req(name, &[]))
            .await
            .unwrap()
            .into_inner()
    }

    /// The last use of the admin's token named `name`, as this replica's `List` shows it
    /// (a List writes out this replica's pending uses first).
    pub async fn last_use_of(&self, name: &str) -> Option<prost_types::Timestamp> {
        self.list(&self.admin, proto::ListRequest::default())
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap()
            .last_use_time
    }

    pub async fn tokens(&self, bearer: &str) -> Tokens {
        self.tokens_with(Meta::bearer(bearer)).await
    }

    pub async fn directory(&self, bearer: &str) -> Directory {
        DirectoryServiceClient::with_interceptor(self.channel().await, Meta::bearer(bearer))
    }

    /// The trusted frontend acting for `principal` of `tenant`.
    pub async fn portal(&self, tenant: &str, principal: &str) -> Tokens {
        let ch = self.frontend_channel(false).await.unwrap();
        TokenServiceClient::with_interceptor(
            ch,
            Meta::default().with("x-jeton-principal", format!("{tenant}/{principal}")),
        )
    }

    /// Creates or replaces a principal of TENANT through the admin.
    pub async fn put_principal(&self, id: &str, role: proto::Role, assignment: proto::Assignment) {
        self.directory(&self.admin)
            .await
            .put_principal(proto::PutPrincipalRequest {
                principal: Some(proto::Principal {
                    id: id.into(),
                    role: role as i32,
                    assignment: assignment as i32,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// A principal of TENANT with `role`, and a first token of theirs issued through the
    /// portal (how a real user gets one).
    pub async fn user(&self, id: &str, role: proto::Role) -> String {
        self.put_principal(id, role, proto::Assignment::Active)
            .await;
        self.portal(TENANT, id)
            .await
            .generate(generate_req("first", &[]))
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    pub async fn validate(
        &self,
        token: &str,
        ns: proto::Namespace,
        required: &[&str],
    ) -> proto::ValidateResponse {
        TokenServiceClient::new(self.channel().await)
            .validate(proto::ValidateRequest {
                token: token.into(),
                namespace: ns as i32,
                required_scopes: required.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Every audit event of `bearer`'s tenant (about `target` when not empty), newest first,
    /// through `ListAuditEvents`, page after page.
    pub async fn audit_events(&self, bearer: &str, target: &str) -> Vec<proto::AuditEvent> {
        let mut dir = self.directory(bearer).await;
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = dir
                .list_audit_events(proto::ListAuditEventsRequest {
                    target: target.to_owned(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return events;
            }
            page_token = page.next_page_token;
        }
    }

    /// Every token of one List call (a single page of up to 1000).
    pub async fn list(
        &self,
        bearer: &str,
        req: proto::ListRequest,
    ) -> Result<Vec<proto::Token>, Status> {
        Ok(self
            .tokens(bearer)
            .await
            .list(proto::ListRequest {
                page_size: 1000,
                ..req
            })
            .await?
            .into_inner()
            .tokens)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Which database engine the suite runs on: `JETON_TEST_ENGINE=sqlite` (default) or
/// `postgres` (database server from `JETON_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DbEngine {
    Sqlite,
    Postgres,
}

impl DbEngine {
    pub fn from_env() -> Self {
        match std::env::var("JETON_TEST_ENGINE").as_deref() {
            Ok("postgres") => DbEngine::Postgres,
            Ok("sqlite") | Err(_) => DbEngine::Sqlite,
            Ok(other) => panic!("JETON_TEST_ENGINE={other}: expected sqlite or postgres"),
        }
    }
}

pub fn generate_req(name: &str, scopes: &[&str]) -> proto::GenerateRequest {
    proto::GenerateRequest {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn reason(r: &proto::ValidateResponse) -> proto::Reason {
    proto::Reason::try_from(r.reason).unwrap()
}

/// Asserts a status code and that the message names `field` (for INVALID_ARGUMENT).
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, field: &str) {
    match r {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(field),
                "message {:?} should name {field:?}",
                s.message()
            );
        }
    }
}

pub fn ids(tokens: &[proto::Token]) -> Vec<String> {
    tokens.iter().map(|t| t.id.clone()).collect()
}

impl TestApp {
    pub fn clock_now_ts(&self) -> prost_types::Timestamp {
        self.clock_ts_after(chrono::TimeDelta::zero())
    }

    pub fn clock_ts_after(&self, d: chrono::TimeDelta) -> prost_types::Timestamp {
        use jeton::domain::Clock;
        let t = self.clock.now() + d;
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }
}

/// A TCP proxy to PostgreSQL on 127.0.0.1:5432 that can be cut (connections closed, port
/// closed), blackholed (connections kept open but nothing forwarded, new ones accepted and
/// left unanswered) and restored.
pub struct Proxy {
    pub port: u16,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Sockets kept open, silent, while blackholed.
    held: Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
    blackholed: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            tasks: Default::default(),
            held: Default::default(),
            blackholed: Default::default(),
        };
        p.serve(listener);
        p
    }

    /// Points `s` at this proxy instead of PostgreSQL's port.
    pub fn route(&self, s: &mut ServeConfig) {
        let url =
            s.db.url
                .expose()
                .replace(":5432/", &format!(":{}/", self.port));
        s.db.url = test_settings(&url).db.url;
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (tasks, held, blackholed) = (
            self.tasks.clone(),
            self.held.clone(),
            self.blackholed.clone(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if blackholed.load(std::sync::atomic::Ordering::SeqCst) {
                    held.lock().unwrap().push(inbound);
                    continue;
                }
                let blackholed = blackholed.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        pipe(&mut inbound, outbound, &blackholed).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the port and every connection through it.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Stops forwarding without closing anything: every statement and every new connection
    /// waits for an answer that never comes.
    pub fn blackhole(&self) {
        self.blackholed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn restore(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Forwards again (after `blackhole`).
    pub async fn unblock(&self) {
        self.blackholed
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.held.lock().unwrap().clear();
        self.cut();
        self.restore().await;
    }
}

/// Forwards between `a` and `b` until either closes; once `blackholed`, swallows what
/// arrives and keeps both sockets open, silent.
async fn pipe(
    a: &mut tokio::net::TcpStream,
    mut b: tokio::net::TcpStream,
    blackholed: &std::sync::atomic::AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let (mut x, mut y) = ([0u8; 8192], [0u8; 8192]);
    loop {
        let hole = || blackholed.load(std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            n = ar.read(&mut x) => match n {
                Ok(n) if n > 0 && !hole() => if bw.write_all(&x[..n]).await.is_err() { return },
                Ok(n) if n > 0 => std::future::pending::<()>().await,
                _ => return,
            },
            n = br.read(&mut y) => match n {
                Ok(n) if n > 0 && !hole() => if aw.write_all(&y[..n]).await.is_err() { return },
                Ok(n) if n > 0 => std::future::pending::<()>().await,
                _ => return,
            },
        }
    }
}

/// An HTTP/1.1 answer: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh plaintext connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The value of each series (`name{labels}`) of a Prometheus scrape.
pub fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}
