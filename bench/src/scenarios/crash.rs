//! Crash safety with more kills than `.ci/run` makes: testkit's crash driver (mixed
//! `Generate`/`Revoke`/`Validate` load, SIGKILL at a random moment, restart) on each engine.

use super::Ctx;
use crate::report::table;
use jeton_testkit::BoxError;
use jeton_testkit::crash::{self, CrashRun};
use std::time::Instant;

const KILLS: usize = 25;

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let mut rows = Vec::new();
    let sqlite = ctx.sqlite("crash.db");
    rows.push(("SQLite", engine(ctx, &sqlite).await?));
    let pg = ctx.postgres("crash").await?;
    rows.push(("PostgreSQL", engine(ctx, pg.url()).await?));
    drop(pg);
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(name, (r, secs))| {
            vec![
                name.to_owned(),
                r.ended_by.len().to_string(),
                r.generated.to_string(),
                r.revoked.to_string(),
                r.validations.to_string(),
                format!("{secs:.0}"),
                "**all held**".into(),
            ]
        })
        .collect();
    Ok(format!(
        "## Acknowledged writes across `kill -9`\n\n\
         Four loops generate a token, validate it, and revoke every third one, against a \
         `jeton serve` that gets SIGKILL 0.2–0.8 s after it starts; it is restarted on the \
         same database {KILLS} times. After the last restart every acknowledged `Generate` \
         must validate unless an acknowledged `Revoke` revoked it, every acknowledged \
         `Revoke` must still be revoked, each must have its audit row, and the server must \
         stop cleanly. (Argon2 at m=256 KiB, t=1, so each short life writes many tokens; \
         `.ci/run` makes 5 kills per engine with the same driver.) The run fails rather \
         than report a loss.\n\n{}",
        table(
            &[
                "engine",
                "kills",
                "acknowledged Generate",
                "acknowledged Revoke",
                "validations",
                "seconds",
                "result",
            ],
            &rows
        )
    ))
}

async fn engine(ctx: &Ctx, db: &str) -> Result<(CrashRun, f64), BoxError> {
    let admin = ctx.bootstrap(db)?;
    let spinner = ctx.progress.spinner(format!(
        "{KILLS} kills on {}",
        db.split(':').next().unwrap_or(db)
    ));
    let t = Instant::now();
    let run = crash::run(&ctx.jeton, db, &admin, KILLS).await?;
    spinner.finish();
    Ok((run, t.elapsed().as_secs_f64()))
}
