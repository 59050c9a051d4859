//! The deployment files under `deploy/` against the real binary and a real server: every
//! setting they give jeton is one it has, every gRPC probe asks a health entry the server
//! serves, and the README promises no file that is not there. (`.ci/deploy-check.sh` lints and
//! schema-checks the same files; no container or cluster runs here.) The files are scanned
//! as text: no YAML parser is needed for what is checked.

use crate::helpers::{TestApp, Transport};
use crate::logs::JETON;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SUBCOMMANDS: [&str; 3] = ["serve", "migrate", "bootstrap"];
/// Read straight from the environment (`--pepper-file`'s alternative), so no `--help`
/// lists it.
const UNLISTED_VARIABLES: [&str; 1] = ["JETON_PEPPER"];

/// Every text file under `deploy/` as (path relative to the repository, content), except the
/// local secrets that `deploy/.gitignore` keeps out of git.
fn deploy_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, ignored: &[String], out: &mut Vec<(String, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(ROOT)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ignored.iter().any(|i| rel.starts_with(i.as_str())) {
                continue;
            }
            if path.is_dir() {
                walk(&path, ignored, out);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(ROOT).join("deploy"),
        &git_ignored_in_deploy(),
        &mut out,
    );
    out
}

/// What `deploy/.gitignore` ignores, as path prefixes relative to the repository (its
/// rules are anchored ones such as `/.env` and `/secrets/`).
fn git_ignored_in_deploy() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join("deploy/.gitignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("deploy/{}", l.trim_start_matches('/')))
        .collect()
}

/// What `jeton <subcommand> --help` lists: the long flags of each subcommand, and the
/// environment variables of all of them.
struct Listed {
    flags: BTreeMap<&'static str, BTreeSet<String>>,
    variables: BTreeSet<String>,
}

fn listed_by_help() -> Listed {
    let mut listed = Listed {
        flags: BTreeMap::new(),
        variables: UNLISTED_VARIABLES.iter().map(|v| v.to_string()).collect(),
    };
    for cmd in SUBCOMMANDS {
        let out = Command::new(JETON)
            .args([cmd, "--help"])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "jeton {cmd} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        let flags = listed.flags.entry(cmd).or_default();
        for line in help.lines() {
            // An option line: `      --flag <VALUE>` or `  -h, --help`.
            let option = line.trim_start();
            let option = option
                .split_once(", ")
                .filter(|(short, _)| short.starts_with('-') && short.len() == 2)
                .map_or(option, |(_, long)| long);
            if line.starts_with("  ") && option.starts_with("--") {
                flags.insert(option.split_whitespace().next().unwrap().to_owned());
            }
            // A description line: `… [env: JETON_X=]` (or `[env: JETON_X]` when its value
            // is hidden).
            for (_, rest) in line
                .match_indices("[env: ")
                .map(|(i, _)| line.split_at(i + 6))
            {
                listed.variables.insert(name_at(rest).to_owned());
            }
        }
    }
    listed
}

/// The `[A-Z0-9_]` name at the start of `s`.
fn name_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every `JETON_[A-Z0-9_]+` name in `text` (not part of a longer identifier).
fn variables_in(text: &str) -> BTreeSet<String> {
    text.match_indices("JETON_")
        .filter(|(i, _)| {
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(i, _)| name_at(&text[i..]))
        .filter(|name| name.len() > "JETON_".len())
        .map(str::to_owned)
        .collect()
}

/// One invocation of jeton found in a file: the subcommand and the long flags given to it.
#[derive(Debug)]
struct Invocation {
    subcommand: String,
    flags: Vec<String>,
}

/// The invocations of jeton in `text`:
/// - on a command line (shell, Dockerfile `RUN`, prose in backquotes): a subcommand word
///   right after a word that names jeton (`jeton`, `/usr/local/bin/jeton`, an image
///   `jeton:0.1.0`, a compose service `jeton-a`), with the `--flags` that follow up to the
///   end of the command (backslash continuations joined);
/// - in an exec-form list (`command: ["serve", …]`, `args: ["migrate"]`, `CMD ["serve"]`, or
///   the same as a YAML block list), whose program is the image's entrypoint `jeton`.
fn invocations_in(text: &str) -> Vec<Invocation> {
    let joined = text.replace("\\\n", " ");
    let mut found = Vec::new();
    let is_subcommand = |w: &str| SUBCOMMANDS.contains(&w);
    let names_jeton = |w: &str| w.rsplit('/').next().unwrap_or(w).starts_with("jeton");
    let flag = |w: &str| w.split('=').next().unwrap().to_owned();
    let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();

    let mut lines = joined.lines().peekable();
    while let Some(line) = lines.next() {
        // Command lines. A backquote ends a command in prose: it is a word of its own.
        let spaced = line.replace('`', " ` ");
        let words: Vec<&str> = spaced
            .split(|c: char| c.is_whitespace() || "\"'".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, pair) in words.windows(2).enumerate() {
            if names_jeton(pair[0]) && is_subcommand(pair[1]) {
                let flags = words[i + 2..]
                    .iter()
                    .take_while(|w| !["`", "|", "||", "&&", ";", "#", ")", ">", "2>"].contains(w))
                    .filter(|w| w.starts_with("--") && w.len() > 2)
                    .map(|w| flag(w))
                    .collect();
                found.push(Invocation {
                    subcommand: pair[1].to_owned(),
                    flags,
                });
            }
        }
        // Exec-form lists: `key: [...]`/`CMD [...]` on one line, or `key:` then `- item`s.
        let mut items: Vec<String> = Vec::new();
        if let (Some(open), Some(close)) = (line.find('['), line.rfind(']'))
            && open < close
        {
            items = line[open + 1..close].split(',').map(unquote).collect();
        } else if let Some(key) = line.trim().strip_suffix(':')
            && ["command", "args", "entrypoint"].contains(&key)
        {
            while let Some(item) = lines.peek().and_then(|l| l.trim().strip_prefix("- ")) {
                items.push(unquote(item));
                lines.next();
            }
        }
        if items.first().is_some_and(|w| names_jeton(w)) {
            items.remove(0);
        }
        if items.first().is_some_and(|w| is_subcommand(w)) {
            found.push(Invocation {
                subcommand: items[0].clone(),
                flags: items[1..]
                    .iter()
                    .filter(|w| w.starts_with("--"))
                    .map(|w| flag(w))
                    .collect(),
            });
        }
    }
    found
}

#[test]
fn every_setting_named_under_deploy_is_one_jeton_has() {
    // Arrange
    let listed = listed_by_help();
    assert!(
        listed.flags["serve"].len() > 20 && listed.variables.len() > 20,
        "--help was parsed: {:?} {:?}",
        listed.flags,
        listed.variables
    );
    let files = deploy_files();

    // Act
    let mut unknown = Vec::new();
    let mut subcommands_seen = BTreeSet::new();
    let mut variables_seen = BTreeSet::new();
    for (path, text) in &files {
        for var in variables_in(text) {
            if !listed.variables.contains(&var) {
                unknown.push(format!(
                    "{path}: {var} is listed by no `jeton <command> --help`"
                ));
            }
            variables_seen.insert(var);
        }
        for inv in invocations_in(text) {
            for f in &inv.flags {
                if !listed.flags[inv.subcommand.as_str()].contains(f) {
                    unknown.push(format!(
                        "{path}: `jeton {} {f}`: `jeton {} --help` lists no {f}",
                        inv.subcommand, inv.subcommand
                    ));
                }
            }
            subcommands_seen.insert(inv.subcommand);
        }
    }

    // Assert
    for expected in ["serve", "migrate", "bootstrap"] {
        assert!(
            subcommands_seen.contains(expected),
            "the scan finds `jeton {expected}` somewhere under deploy/ (found {subcommands_seen:?})"
        );
    }
    for expected in ["JETON_DATABASE_URL", "JETON_PEPPER_FILE", "JETON_LISTEN"] {
        assert!(
            variables_seen.contains(expected),
            "the scan finds {expected} somewhere under deploy/ (found {variables_seen:?})"
        );
    }
    assert!(
        unknown.is_empty(),
        "settings that jeton does not have:\n{}",
        unknown.join("\n")
    );
}

/// The `service:` of every `grpc:` probe in `deploy/kubernetes/*.yaml`, with its file: block
/// style (`grpc:` then indented `service: x`) or flow style (`grpc: {port: …, service: x}`).
fn grpc_probe_services() -> Vec<(String, String)> {
    let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
    let mut found = Vec::new();
    for (path, text) in deploy_files() {
        if !path.starts_with("deploy/kubernetes/") || !path.ends_with(".yaml") {
            continue;
        }
        let mut grpc_indent: Option<usize> = None;
        for line in text.lines() {
            let content = line.split(" #").next().unwrap();
            let trimmed = content.trim_start();
            let indent = content.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if grpc_indent.is_some_and(|g| indent <= g) {
                grpc_indent = None;
            }
            if let Some(rest) = trimmed.strip_prefix("grpc:") {
                let rest = rest.trim();
                if rest.is_empty() {
                    grpc_indent = Some(indent);
                } else if let Some(service) = rest
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .find_map(|kv| kv.trim().strip_prefix("service:"))
                {
                    found.push((path.clone(), unquote(service)));
                }
            } else if grpc_indent.is_some()
                && let Some(service) = trimmed.strip_prefix("service:")
            {
                found.push((path.clone(), unquote(service)));
            }
        }
    }
    found
}

#[tokio::test]
async fn every_grpc_probe_asks_a_health_entry_the_server_serves() {
    // Arrange
    let probes = grpc_probe_services();
    let services: BTreeSet<&str> = probes.iter().map(|(_, s)| s.as_str()).collect();
    assert!(
        services.contains("liveness") && services.contains("jeton.v1.TokenService"),
        "the scan finds the liveness and readiness probes in deploy/kubernetes: {probes:?}"
    );
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let mut health = HealthClient::new(app.channel().await);

    // Act
    let mut wrong = Vec::new();
    for service in &services {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await;
        match answer {
            Ok(r) if r.get_ref().status() == ServingStatus::Serving => {}
            Ok(r) => wrong.push(format!("{service:?}: {:?}", r.get_ref().status())),
            Err(status) => wrong.push(format!("{service:?}: {status:?}")),
        }
    }

    // Assert
    assert!(
        wrong.is_empty(),
        "gRPC probes in deploy/kubernetes ask health entries that a healthy server does not \
         answer SERVING:\n{}\n(probes: {probes:?})",
        wrong.join("\n")
    );
}

#[test]
fn the_deploy_readme_names_only_files_that_exist() {
    // Arrange
    let readme = std::fs::read_to_string(Path::new(ROOT).join("deploy/README.md")).unwrap();
    let ignored = git_ignored_in_deploy();
    let root = Path::new(ROOT);
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);

    // Act: words that are relative paths under a top-level entry of the repository (such as
    // `deploy/compose.yaml` or `.ci/deploy-check.sh`), and bare file names (`Cargo.lock`).
    let mut missing = BTreeSet::new();
    let mut checked = 0;
    for word in readme.split(|c: char| c.is_whitespace() || "`\"'()[]=,:".contains(c)) {
        // Absolute paths are inside a container; `./x` is the reader's own file.
        if word.is_empty()
            || !word.chars().all(is_path_char)
            || word.starts_with(['/', '~'])
            || word.starts_with("./")
        {
            continue;
        }
        let word = word.trim_end_matches('.');
        let exists = if let Some((first, _)) = word.split_once('/') {
            if !root.join(first).exists() {
                continue;
            }
            root.join(word).exists()
        } else if [".md", ".yaml", ".sh", ".rs", ".toml", ".lock", ".example"]
            .iter()
            .any(|ext| word.ends_with(ext) && word.len() > ext.len())
        {
            ["", "deploy", "deploy/kubernetes"]
                .iter()
                .any(|dir| root.join(dir).join(word).exists())
        } else {
            continue;
        };
        checked += 1;
        if !exists
            && !ignored
                .iter()
                .any(|i| word.starts_with(i.trim_end_matches('/')))
        {
            missing.insert(word.to_owned());
        }
    }

    // Assert
    assert!(checked > 10, "the README's paths were found ({checked})");
    assert!(
        missing.is_empty(),
        "deploy/README.md names files that do not exist: {missing:?}"
    );
}
