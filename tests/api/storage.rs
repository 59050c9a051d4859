//! What jeton leaves in its database, read straight from the database: secrets only as
//! Argon2id hashes (rule 1), and a write that fails inside its transaction leaves nothing
//! behind — no row, no change-log entry, no audit event (rule 13).

use crate::helpers::*;
use jeton::grpc::proto::{self, Namespace, Reason, Role};
use sea_orm::{ConnectionTrait, Statement};
use std::collections::BTreeSet;

/// The first column of every row `sql` returns on the database at `url`, as text.
pub async fn texts(url: &str, sql: &str) -> Vec<String> {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let out = rows
        .iter()
        .map(|r| {
            r.try_get_by_index::<String>(0)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
        .collect();
    db.close().await.unwrap();
    out
}

/// The single integer `sql` returns on the database at `url`.
pub async fn number(url: &str, sql: &str) -> i64 {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    let n = row
        .try_get_by_index::<i64>(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    db.close().await.unwrap();
    n
}

/// Runs one statement on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    jeton_testkit::postgres::statement(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs one statement on `conn` (a connection or an open transaction).
pub async fn execute_on(conn: &impl ConnectionTrait, sql: &str) {
    conn.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The namespace a token string's prefix names.
fn namespace_of(token: &str) -> Namespace {
    match &token[..4] {
        "jta_" => Namespace::Api,
        "jtl_" => Namespace::LogCollector,
        "jts_" => Namespace::Siem,
        other => panic!("not a token prefix: {other}"),
    }
}

/// The 43-character secret inside a token string (`jt?_` + 22-character id + secret + CRC).
fn secret_part(token: &str) -> &str {
    assert_eq!(token.len(), 75, "a whole token string");
    &token[26..69]
}

fn id_part(token: &str) -> &str {
    &token[4..26]
}

/// Issues every kind of token jeton makes — bootstrap, API through a bearer and through the
/// portal, log-collector and SIEM, a rotation, another tenant's bootstrap — uses each once,
/// revokes one and reports another leaked. Returns every token string issued.
async fn issue_every_kind(app: &TestApp) -> Vec<String> {
    let mut admin = app.tokens(&app.admin).await;
    let mut issued = vec![app.admin.clone()];
    let api = admin
        .generate(generate_req("ci", &["read"]))
        .await
        .unwrap()
        .into_inner();
    issued.push(api.secret.clone());
    for (ns, subject) in [
        (Namespace::LogCollector, "collector-eu"),
        (Namespace::Siem, "splunk-forwarder-1"),
    ] {
        let g = admin
            .generate(proto::GenerateRequest {
                namespace: ns as i32,
                subject: subject.into(),
                ..generate_req("tenant-wide", &[])
            })
            .await
            .unwrap()
            .into_inner();
        issued.push(g.secret);
    }
    let rotated = admin
        .generate(proto::GenerateRequest {
            rotate_id: api.token.unwrap().id,
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    issued.push(rotated.secret);
    issued.push(app.user("rita@contoso.com", Role::Reader).await);
    issued.push(app.bootstrap_tenant("fabrikam", "root@fabrikam.com").await);

    for t in &issued {
        let v = app.validate(t, namespace_of(t), &[]).await;
        assert!(v.valid, "{} is good: {v:?}", id_part(t));
    }
    let siem = issued.iter().find(|t| t.starts_with("jts_")).unwrap();
    admin
        .revoke(proto::RevokeRequest {
            id: id_part(siem).into(),
        })
        .await
        .unwrap();
    assert_eq!(
        reason(&app.validate(siem, Namespace::Siem, &[]).await),
        Reason::Revoked
    );
    // A leaked token reported by anyone who holds it: the whole string reaches jeton once
    // more, and its audit event must not keep it.
    let leaked = issued.iter().find(|t| t.starts_with("jtl_")).unwrap();
    proto::token_service_client::TokenServiceClient::new(app.channel().await)
        .revoke_leaked(proto::RevokeLeakedRequest {
            tokens: vec![leaked.clone()],
        })
        .await
        .unwrap();
    assert_eq!(
        reason(&app.validate(leaked, Namespace::LogCollector, &[]).await),
        Reason::Revoked
    );
    assert_eq!(issued.len(), 7);
    issued
}

/// Rule 1 at the level of rows, on either engine: every token row holds an Argon2id PHC
/// string, no row holds a secret, and the rows are exactly the tokens issued.
async fn token_rows_hold_only_hashes(url: &str, issued: &[String]) {
    let ids: BTreeSet<String> = texts(url, "SELECT id FROM tokens")
        .await
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = issued.iter().map(|t| id_part(t).to_owned()).collect();
    assert_eq!(ids, expected, "one row per token issued");
    let hashes = texts(url, "SELECT secret_hash FROM tokens ORDER BY id").await;
    assert_eq!(hashes.len(), issued.len());
    for h in &hashes {
        assert!(
            h.starts_with("$argon2id$"),
            "not an Argon2id PHC string: {h}"
        );
        for t in issued {
            assert!(!h.contains(secret_part(t)), "a secret inside a hash column");
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// SQLite, whatever `JETON_TEST_ENGINE` says: no token string and no secret anywhere in the
/// bytes of the database file, its write-ahead log or its shared-memory file — free pages
/// and unfolded log frames included.
#[tokio::test]
async fn no_secret_is_stored_in_clear_in_the_sqlite_files() {
    let mut app = TestApp::spawn_on(DbEngine::Sqlite, Transport::Tls, |_| {}).await;
    let issued = issue_every_kind(&app).await;
    token_rows_hold_only_hashes(&app.db_url, &issued).await;

    // The files while the server runs (the log holds recent frames), then after a clean stop
    // (uses flushed, the log folded into the file).
    let path = std::path::PathBuf::from(app.db_url.strip_prefix("sqlite://").unwrap());
    let files = |path: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let running = files(&path);
    app.stop().await;
    let stopped = files(&path);
    let mut scanned = 0;
    for (name, bytes) in running.iter().chain(&stopped) {
        scanned += bytes.len();
        for t in &issued {
            assert!(!contains(bytes, t), "a whole token string in {name}");
            assert!(!contains(bytes, secret_part(t)), "a secret in {name}");
        }
    }
    // The scan sees what is stored: every token's public id is in the stopped file.
    let (_, main) = stopped
        .iter()
        .find(|(n, _)| n == "jeton.db")
        .expect("the database file");
    for t in &issued {
        assert!(
            contains(main, id_part(t)),
            "the id {} is stored",
            id_part(t)
        );
    }
    eprintln!(
        "scanned {scanned} bytes in {:?} and {:?}",
        running
            .iter()
            .map(|(n, b)| (n, b.len()))
            .collect::<Vec<_>>(),
        stopped
            .iter()
            .map(|(n, b)| (n, b.len()))
            .collect::<Vec<_>>()
    );
}

/// PostgreSQL: no token string and no secret in any column of any row of any table of
/// jeton's database (tokens, audit trail, change log, principals, tenants, migrations).
#[tokio::test]
async fn no_secret_is_stored_in_clear_on_postgres() {
    let mut app = TestApp::spawn_on(DbEngine::Postgres, Transport::Tls, |_| {}).await;
    let issued = issue_every_kind(&app).await;
    app.stop().await;
    let url = app.db_url.clone();
    token_rows_hold_only_hashes(&url, &issued).await;

    let tables = texts(
        &url,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .await;
    for t in ["audit_events", "changes", "principals", "tenants", "tokens"] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    let mut everything = String::new();
    for table in &tables {
        let rows = texts(
            &url,
            &format!("SELECT row_to_json(t)::text FROM \"{table}\" t"),
        )
        .await;
        assert!(!rows.is_empty(), "{table} has rows");
        for row in rows {
            everything.push_str(&row);
            everything.push('\n');
        }
    }
    for t in &issued {
        assert!(!everything.contains(t.as_str()), "a whole token string");
        assert!(!everything.contains(secret_part(t)), "a secret");
        // The scan sees what is stored: each id is in its row and in its audit event.
        assert!(
            everything.matches(id_part(t)).count() >= 2,
            "the id {} in the token row and the audit trail",
            id_part(t)
        );
    }
}

/// What a failed write could have left behind.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    tokens: i64,
    live_tokens: i64,
    principals: i64,
    changes: i64,
    last_change: i64,
    audit: i64,
    last_audit: i64,
}

impl Footprint {
    async fn of(url: &str) -> Self {
        Self {
            tokens: number(url, "SELECT COUNT(*) FROM tokens").await,
            live_tokens: number(url, "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL").await,
            principals: number(url, "SELECT COUNT(*) FROM principals").await,
            changes: number(url, "SELECT COUNT(*) FROM changes").await,
            last_change: number(url, "SELECT COALESCE(MAX(seq), 0) FROM changes").await,
            audit: number(url, "SELECT COUNT(*) FROM audit_events").await,
            last_audit: number(url, "SELECT COALESCE(MAX(seq), 0) FROM audit_events").await,
        }
    }
}

/// Makes every insert into the audit trail fail, as a full disk or a broken constraint
/// would, on either engine.
async fn break_the_audit_trail(engine: DbEngine, url: &str) {
    match engine {
        DbEngine::Sqlite => {
            execute(
                url,
                "CREATE TRIGGER audit_boom BEFORE INSERT ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END",
            )
            .await
        }
        DbEngine::Postgres => {
            execute(
                url,
                "CREATE FUNCTION audit_boom() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
            )
            .await;
            execute(
                url,
                "CREATE TRIGGER audit_boom BEFORE INSERT ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION audit_boom()",
            )
            .await;
        }
    }
}

async fn mend_the_audit_trail(engine: DbEngine, url: &str) {
    match engine {
        DbEngine::Sqlite => execute(url, "DROP TRIGGER audit_boom").await,
        DbEngine::Postgres => execute(url, "DROP TRIGGER audit_boom ON audit_events").await,
    }
}

/// Every audit event of TENANT, newest first, through the API.
async fn audit_trail(app: &TestApp) -> Vec<proto::AuditEvent> {
    app.audit_events(&app.admin, "").await
}

/// Rule 13 and the store's one-transaction write: when the audit insert at the end of a
/// write fails, the call fails and the token row, the change-log row and the audit row are
/// all rolled back; once the audit trail works again, the same write leaves exactly one of
/// each.
async fn a_write_whose_audit_event_fails_leaves_nothing(engine: DbEngine) {
    let app = TestApp::spawn_on(engine, Transport::Tls, |_| {}).await;
    let url = app.db_url.clone();
    let mut admin = app.tokens(&app.admin).await;
    let victim = admin
        .generate(generate_req("victim", &[]))
        .await
        .unwrap()
        .into_inner();
    let victim_id = victim.token.unwrap().id;
    assert!(
        app.validate(&victim.secret, Namespace::Api, &[])
            .await
            .valid
    );
    let before = Footprint::of(&url).await;
    assert!(
        before.tokens == 2 && before.changes >= 2 && before.audit >= 3,
        "real rows to compare: {before:?}"
    );
    let trail_before = audit_trail(&app).await;
    assert_eq!(trail_before.len() as i64, before.audit);

    break_the_audit_trail(engine, &url).await;
    let revoked = admin
        .revoke(proto::RevokeRequest {
            id: victim_id.clone(),
        })
        .await;
    let generated = admin.generate(generate_req("never stored", &[])).await;
    let put = app
        .directory(&app.admin)
        .await
        .put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: "ghost@contoso.com".into(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
        })
        .await;
    eprintln!(
        "{engine:?}: revoke {:?}, generate {:?}, put principal {:?}",
        revoked.as_ref().map_err(|s| s.code()).map(drop),
        generated.as_ref().map_err(|s| s.code()).map(drop),
        put.as_ref().map_err(|s| s.code()).map(drop)
    );
    assert!(revoked.is_err(), "Revoke without its audit event succeeded");
    assert!(
        generated.is_err(),
        "Generate without its audit event succeeded"
    );
    assert!(
        put.is_err(),
        "PutPrincipal without its audit event succeeded"
    );

    assert_eq!(
        Footprint::of(&url).await,
        before,
        "a failed write left rows behind"
    );
    assert_eq!(
        number(
            &url,
            &format!("SELECT COUNT(*) FROM tokens WHERE id = '{victim_id}' AND revoked_at IS NULL")
        )
        .await,
        1,
        "the victim's row is untouched"
    );
    // Still good: on this replica, and on a fresh one with nothing cached.
    assert!(
        app.validate(&victim.secret, Namespace::Api, &[])
            .await
            .valid
    );
    let fresh = app.replica().await;
    assert!(
        fresh
            .validate(&victim.secret, Namespace::Api, &[])
            .await
            .valid
    );
    assert!(
        app.list(&app.admin, proto::ListRequest::default())
            .await
            .unwrap()
            .iter()
            .all(|t| t.name != "never stored")
    );

    mend_the_audit_trail(engine, &url).await;
    assert_eq!(
        audit_trail(&app).await,
        trail_before,
        "no audit event of the failed writes"
    );
    // The same revocation now goes through, with exactly one row of each kind.
    admin
        .revoke(proto::RevokeRequest {
            id: victim_id.clone(),
        })
        .await
        .unwrap();
    let after = Footprint::of(&url).await;
    assert_eq!(
        (after.tokens, after.live_tokens, after.changes, after.audit),
        (
            before.tokens,
            before.live_tokens - 1,
            before.changes + 1,
            before.audit + 1
        ),
        "{after:?}"
    );
    let trail = audit_trail(&app).await;
    consecutive(&trail);
    assert_eq!(trail[0].target, victim_id);
    assert_eq!(
        trail[0].action,
        proto::AuditAction::TokenRevoked as i32,
        "{:?}",
        trail[0]
    );
    assert_eq!(
        reason(&app.validate(&victim.secret, Namespace::Api, &[]).await),
        Reason::Revoked
    );
}

#[tokio::test]
async fn a_write_whose_audit_event_fails_leaves_nothing_on_sqlite() {
    a_write_whose_audit_event_fails_leaves_nothing(DbEngine::Sqlite).await;
}

#[tokio::test]
async fn a_write_whose_audit_event_fails_leaves_nothing_on_postgres() {
    a_write_whose_audit_event_fails_leaves_nothing(DbEngine::Postgres).await;
}

/// The sequences of `events`, oldest first, checked to be exactly 1, 2, 3, … with no gap and
/// no duplicate, and in the order of the events' ids (the order they were written in).
fn consecutive(events: &[proto::AuditEvent]) -> Vec<i64> {
    let mut by_id: Vec<(u64, i64)> = events
        .iter()
        .map(|e| (e.id.parse().unwrap(), e.sequence))
        .collect();
    by_id.sort();
    let sequences: Vec<i64> = by_id.iter().map(|(_, s)| *s).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(sequences, expected, "1, 2, 3, … in the order written");
    sequences
}

/// Rule of the audit stream: each tenant's events are numbered 1, 2, 3, … with no gap and
/// no duplicate, in the order they committed, though writers race on two replicas; a write
/// that fails gives its number back; another tenant's numbers are its own.
#[tokio::test(flavor = "multi_thread")]
async fn audit_sequences_have_no_gap_under_concurrent_writers_on_two_replicas_on_postgres() {
    let a = TestApp::spawn_on(DbEngine::Postgres, Transport::Plain, |s| {
        s.max_tokens_per_owner = 10_000;
    })
    .await;
    let b = a
        .replica_with(Transport::Plain, |s| s.max_tokens_per_owner = 10_000)
        .await;
    let other = a.bootstrap_tenant("acme", "root@acme.example").await;
    let mut writers = Vec::new();
    for (r, app) in [&a, &b].into_iter().enumerate() {
        for w in 0..4 {
            let mut tokens = app.tokens(&app.admin).await;
            let mut others = app.tokens(&other).await;
            writers.push(tokio::spawn(async move {
                for i in 0..25 {
                    let t = tokens
                        .generate(generate_req(&format!("r{r}w{w}i{i}"), &[]))
                        .await
                        .unwrap()
                        .into_inner();
                    if i % 5 == 0 {
                        tokens
                            .revoke(proto::RevokeRequest {
                                id: t.token.unwrap().id,
                            })
                            .await
                            .unwrap();
                        others
                            .generate(generate_req(&format!("o{r}w{w}i{i}"), &[]))
                            .await
                            .unwrap();
                    }
                }
            }));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let trail = audit_trail(&a).await;
    let sequences = consecutive(&trail);
    assert!(sequences.len() >= 8 * 30, "{} events", sequences.len());
    // The other tenant: its own 1, 2, 3, …
    let theirs = a.audit_events(&other, "").await;
    assert!(consecutive(&theirs).len() >= 8 * 5);
}
