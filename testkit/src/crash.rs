//! Crash safety: `Generate`, `Revoke` and `Validate` under load against a real `jeton serve`
//! that is killed with SIGKILL at random moments and restarted on the same database. What
//! jeton acknowledged must survive: every acknowledged `Generate` exists and validates unless
//! an acknowledged `Revoke` revoked it, every acknowledged `Revoke` stays revoked, the audit
//! trail has a row for each, and the server restarts cleanly every time.

use crate::BoxError;
use crate::served::Served;
use jeton::grpc::proto::{
    self, directory_service_client::DirectoryServiceClient,
    token_service_client::TokenServiceClient,
};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// What a run did.
#[derive(Debug, Default)]
pub struct CrashRun {
    /// For each life of the server: the signal that ended it, as its exit status says.
    pub ended_by: Vec<Option<i32>>,
    /// For each life: the writes acknowledged during it (so the kill came mid-load).
    pub writes_per_life: Vec<usize>,
    /// Acknowledged `Generate`s and `Revoke`s.
    pub generated: usize,
    pub revoked: usize,
    pub validations: usize,
}

/// What the load saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// Token id → token string.
    generated: BTreeMap<String, String>,
    revoked: BTreeSet<String>,
    validations: usize,
}

/// Flags of every `jeton serve` of a crash run: cheap Argon2, so that each short life of the
/// server writes many tokens, and no per-owner quota in the way.
const SERVER_ARGS: &[&str] = &[
    "--argon2-memory-kib",
    "256",
    "--argon2-iterations",
    "1",
    "--max-tokens-per-owner",
    "100000",
];

/// Starts `jeton serve` on `db` with [`SERVER_ARGS`].
fn start(jeton: &std::path::Path, db: &str) -> Served {
    let mut cmd = Command::new(jeton);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", db])
        .args(SERVER_ARGS)
        .env("JETON_LOG", "warn,jeton::app=info")
        .env("JETON_LOG_FORMAT", "pretty");
    Served::start(cmd)
}

async fn channel(addr: &str) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?)
}

fn bearer(admin: &str) -> impl tonic::service::Interceptor + Clone + use<> {
    let value: MetadataValue<_> = format!("Bearer {admin}")
        .parse()
        .unwrap_or_else(|_| MetadataValue::from_static("Bearer x"));
    move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    }
}

/// One loop of mixed load until its server dies: generate, validate, and revoke every third
/// token it generated.
async fn load(addr: String, admin: String, acked: Arc<Mutex<Acknowledged>>) {
    let Ok(ch) = channel(&addr).await else { return };
    let mut tokens = TokenServiceClient::with_interceptor(ch.clone(), bearer(&admin));
    let mut anyone = TokenServiceClient::new(ch);
    let mut i = 0u64;
    loop {
        i += 1;
        let g = tokens
            .generate(proto::GenerateRequest {
                name: format!("crash-{i}"),
                ..Default::default()
            })
            .await;
        let Ok(g) = g else { return };
        let g = g.into_inner();
        let Some(id) = g.token.map(|t| t.id) else {
            return;
        };
        acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generated
            .insert(id.clone(), g.secret.clone());
        let v = anyone
            .validate(proto::ValidateRequest {
                token: g.secret,
                ..Default::default()
            })
            .await;
        if v.is_err() {
            return;
        }
        acked.lock().unwrap_or_else(|e| e.into_inner()).validations += 1;
        if i.is_multiple_of(3) {
            if tokens
                .revoke(proto::RevokeRequest { id: id.clone() })
                .await
                .is_err()
            {
                return;
            }
            acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revoked
                .insert(id);
        }
    }
}

/// Runs the load on `db` and kills the server `kills` times at random moments (0.2–0.8 s
/// after each start), then checks what survived. `admin` is the token of a tenant admin on
/// `db`.
pub async fn run(
    jeton: &std::path::Path,
    db: &str,
    admin: &str,
    kills: usize,
) -> Result<CrashRun, BoxError> {
    use rand::RngExt;
    use std::os::unix::process::ExitStatusExt;
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let writes = |a: &Mutex<Acknowledged>| {
        let a = a.lock().unwrap_or_else(|e| e.into_inner());
        a.generated.len() + a.revoked.len()
    };
    let mut ended_by = Vec::with_capacity(kills);
    let mut writes_per_life = Vec::with_capacity(kills);
    for _ in 0..kills {
        let before = writes(&acked);
        let server = start(jeton, db);
        let addr = server.addr().to_owned();
        let loops: Vec<_> = (0..4)
            .map(|_| tokio::spawn(load(addr.clone(), admin.to_owned(), acked.clone())))
            .collect();
        let wait = rand::rng().random_range(200..800);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.signal("KILL");
        let (status, _) = server.wait();
        if status.success() {
            return Err("the server exited cleanly instead of being killed".into());
        }
        ended_by.push(status.signal());
        for l in loops {
            let _ = l.await;
        }
        writes_per_life.push(writes(&acked) - before);
    }
    // Restarted once more: it must start cleanly, and hold everything acknowledged.
    let server = start(jeton, db);
    let ch = channel(server.addr()).await?;
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    check(ch, admin, &acked).await?;
    let (status, log) = server.terminate();
    if !status.success() {
        return Err(format!("the last restart did not stop cleanly: {log}").into());
    }
    Ok(CrashRun {
        ended_by,
        writes_per_life,
        generated: acked.generated.len(),
        revoked: acked.revoked.len(),
        validations: acked.validations,
    })
}

async fn check(ch: Channel, admin: &str, acked: &Acknowledged) -> Result<(), BoxError> {
    let mut anyone = TokenServiceClient::new(ch.clone());
    for (id, secret) in &acked.generated {
        let v = anyone
            .validate(proto::ValidateRequest {
                token: secret.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let revoked = acked.revoked.contains(id);
        match (revoked, v.valid, v.reason()) {
            (false, true, _) | (true, false, proto::Reason::Revoked) => {}
            // Revoked by a call that never came back: either way is right.
            (false, false, proto::Reason::Revoked) => {}
            (r, valid, reason) => {
                return Err(format!(
                    "token {id}: acknowledged revoke {r}, but valid {valid} ({reason:?})"
                )
                .into());
            }
        }
    }
    // The audit trail holds a row for each acknowledged write.
    let mut dir = DirectoryServiceClient::with_interceptor(ch, bearer(admin));
    let mut generated = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = dir
            .list_audit_events(proto::ListAuditEventsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in page.events {
            match e.action() {
                proto::AuditAction::TokenGenerated => generated.insert(e.target),
                proto::AuditAction::TokenRevoked => revoked.insert(e.target),
                _ => false,
            };
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if let Some(id) = acked.generated.keys().find(|id| !generated.contains(*id)) {
        return Err(format!("no audit row for the acknowledged generation of {id}").into());
    }
    if let Some(id) = acked.revoked.iter().find(|id| !revoked.contains(*id)) {
        return Err(format!("no audit row for the acknowledged revocation of {id}").into());
    }
    Ok(())
}
