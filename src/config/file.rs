//! The TOML file of `--config`: a value for any setting that neither a flag nor an
//! environment variable gave. Its keys are the long flag names with `_` for `-`; a key that
//! no subcommand knows is an error, a key that only another subcommand knows is left for it
//! (one file can serve `serve`, `migrate` and `bootstrap`).
//!
//! The file's values are handed to clap as if they were flags, so they are checked by the
//! same parsers, with the same error messages, as a flag would be.

use super::{Cli, ConfigError};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

/// Parses the command line `argv` (program name first) with the environment and the TOML
/// file it names.
pub fn parse_command_line(argv: Vec<OsString>) -> Result<Cli, ConfigError> {
    let cmd = Cli::command();
    // A first pass, forgiving missing arguments, to learn the file and what is already set.
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)?;
    let Some(path) = first.get_one::<std::path::PathBuf>("config").cloned() else {
        return Ok(Cli::from_arg_matches_mut(
            &mut cmd.try_get_matches_from(argv)?,
        )?);
    };
    let table = read(&path)?;
    let mut argv = argv;
    let sub = first.subcommand();
    let keys = known_keys(&cmd);
    for (key, value) in table {
        let Some((id, owners)) = keys.get(&key) else {
            return Err(ConfigError::File {
                path,
                message: format!("unknown setting {key:?}"),
            });
        };
        // The matches that hold this setting for the subcommand being run, if it has it.
        let matches = match sub {
            Some((name, m)) if owners.iter().any(|o| o == name) => m,
            _ if owners.iter().any(|o| o.is_empty()) => &first,
            _ => continue,
        };
        let given = matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        for v in values(&path, &key, value)? {
            argv.push(OsString::from(format!("{flag}={v}")));
        }
    }
    Ok(Cli::from_arg_matches_mut(
        &mut cmd.try_get_matches_from(argv)?,
    )?)
}

fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what: "--config",
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Every TOML key: the argument's id, and the subcommands that have it ("" for global
/// ones).
fn known_keys(cmd: &clap::Command) -> HashMap<String, (String, Vec<String>)> {
    let mut keys: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let mut add = |owner: &str, c: &clap::Command| {
        for a in c.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if (a.is_global_set() && !owner.is_empty())
                || ["config", "help", "version"].contains(&long)
            {
                continue;
            }
            let entry = keys
                .entry(long.replace('-', "_"))
                .or_insert_with(|| (a.get_id().as_str().to_owned(), Vec::new()));
            entry.1.push(owner.to_owned());
        }
    };
    add("", cmd);
    for sub in cmd.get_subcommands() {
        add(sub.get_name(), sub);
    }
    keys
}

/// A TOML value as the flag values it stands for.
fn values(path: &Path, key: &str, value: toml::Value) -> Result<Vec<String>, ConfigError> {
    let one = |v: toml::Value| match v {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(ConfigError::File {
            path: path.to_owned(),
            message: format!("{key}: expected a string, number or boolean"),
        }),
    };
    match value {
        toml::Value::Array(items) => items.into_iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Command;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn with_file(text: &str, args: &[&str]) -> Result<Cli, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jeton.toml");
        std::fs::write(&path, text).unwrap();
        let mut all = vec!["jeton", "--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        parse_command_line(argv(&all))
    }

    #[test]
    fn file_fills_what_flags_left_unset() {
        let cli = with_file(
            "database_url = \"sqlite://file.db\"\nactivity_window = \"3d\"\nlisten = \"0.0.0.0:1\"\ntenant = \"contoso\"\nlog = \"debug\"",
            &["serve", "--listen", "127.0.0.1:9"],
        )
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("serve")
        };
        assert_eq!(s.listen.port(), 9, "the flag wins over the file");
        assert_eq!(s.db.url.expose(), "sqlite://file.db");
        assert_eq!(s.activity_window, std::time::Duration::from_secs(3 * 86400));
        assert_eq!(cli.log, "debug");
    }

    #[test]
    fn bootstrap_settings_may_come_from_the_file() {
        let cli = with_file(
            "tenant = \"contoso\"\nadmin = \"alice@contoso.com\"\ntenant_name = \"Contoso\"\nlisten = \"0.0.0.0:1\"",
            &["bootstrap"],
        )
        .unwrap();
        let Command::Bootstrap(b) = cli.command else {
            panic!("bootstrap")
        };
        assert_eq!(b.tenant.as_str(), "contoso");
        assert_eq!(b.tenant_name.unwrap().as_str(), "Contoso");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_by_name() {
        let e = with_file("nonsense = 1", &["serve"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense"), "{e}");
        let e = with_file("db_max_connections = 0", &["serve"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--db-max-connections"), "{e}");
        let e = with_file("change_poll_interval = \"0s\"", &["serve"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--change-poll-interval"), "{e}");
    }
}
