//! A PostgreSQL primary and its streaming standby, started for one failover test or one
//! benchmark run on ports of their own, and removed after: what jeton's failover tests kill,
//! promote and count against. Never the machine's PostgreSQL on 127.0.0.1:5432, which this
//! module neither reads nor stops.
//!
//! How the pair is made (PostgreSQL 15 in `/usr/lib/postgresql/15/bin`, or
//! `JETON_TEST_PG_BIN`):
//! - Everything lives in one folder `jeton-pgpair-<test pid>-<n>` owned by `postgres`:
//!   `primary/`, `standby/`, their logs, and the Unix sockets (never `/var/run/postgresql`).
//!   The folder is in `JETON_TEST_PG_DIR` if set (the `postgres` user must be able to reach
//!   it), else in `/dev/shm` when that has 1 GiB free, else in `/tmp`. In memory a pair
//!   starts in 1.1–1.3 s here; on this machine's shared disk it took 1.5–5 s, depending on
//!   the other writers (`initdb` and the base backup write ~110 MB a pair). Docker's default
//!   `/dev/shm` (64 MB) is too small, so there it falls back to `/tmp`.
//! - `initdb` refuses root, so when the tests run as root (as in CI) every server command
//!   runs as the `postgres` user through `runuser -u postgres --`; as any other user, as
//!   that user. A failing step fails with the command, its output and the server's log.
//! - The primary: `initdb` with trust authentication (`-U postgres`), listening on
//!   127.0.0.1 only, on a port found by binding port 0 and releasing it (another one is
//!   tried if a process takes it in between), `wal_level=replica`, `hot_standby=on`, and a
//!   database [`DATABASE`].
//! - The standby: `pg_basebackup -R -X stream` with `application_name=standby1` in the
//!   generated `primary_conninfo` and a physical replication slot `standby1`, so that it
//!   never falls behind what the primary keeps, however long it is stopped. Started on a
//!   port of its own. [`PgPair::start`] returns once the primary's `pg_stat_replication`
//!   shows `standby1` `streaming` (and `sync_state = 'sync'` for
//!   [`Replication::Synchronous`]).
//! - Synchronous replication is switched on *after* the base backup (`ALTER SYSTEM SET
//!   synchronous_standby_names = 'standby1'`, kept in the primary's own
//!   `postgresql.auto.conf`), for two reasons: `CREATE DATABASE` would wait for a standby
//!   that does not exist yet, and the standby must not inherit the setting — once promoted
//!   it has no standby of its own, and with the setting every commit on it would wait for
//!   ever.
//! - `fsync=off` (and `--no-sync` for `initdb` and `pg_basebackup`): it only matters when
//!   the operating system itself goes down. Every failure this harness makes is a process
//!   being killed or stopped on a machine that stays up, where WAL written to the kernel
//!   survives, so no test can observe the difference — and starting takes a fraction of
//!   the time on a shared disk.
//!
//! What a test must not assume:
//! - **Acknowledged is not visible on the standby.** With [`Replication::Synchronous`]
//!   (`synchronous_commit = on`), a commit returns once the standby has *flushed* its WAL,
//!   not replayed it: a read on the standby just after may not see it yet. Wait with a
//!   bound, or compare the standby's `pg_last_wal_replay_lsn()` with the commit's position.
//!   After [`PgPair::promote_standby`], every acknowledged commit is there (promotion
//!   replays everything received first).
//! - **Asynchronous replication promises nothing.** With [`Replication::Asynchronous`] the
//!   standby's replay lag is whatever it is: a commit the primary acknowledged may be
//!   missing on the standby, and lost after a kill and promote. Tests observe and report
//!   it; they must not assert either outcome.
//! - **A commit that was still waiting is not acknowledged.** With the synchronous standby
//!   away, a commit blocks ([`PgPair::stop_standby`] shows it); if the primary dies while it
//!   waits, the row may or may not exist after the promote.
//! - **After a promote, the former standby runs alone**: no standby, so nothing is
//!   replicated any more and its commits never wait. One failover per pair; the old primary
//!   is not brought back.
//! - **A kill is a crash of processes, not a lost host.** [`PgPair::kill_primary`] kills
//!   the postmaster and every child with SIGKILL at once; the kernel closes their sockets,
//!   so clients see their connections closed at once and new ones refused — never the
//!   timeouts a vanished machine or a network partition would give.
//! - `primary` and `standby` name the roles at start: after a promote the "standby" is the
//!   primary. Ports and URLs stay the same for the life of the pair.
//! - Reads on the standby can still be cancelled by replay conflicts (e.g. a replayed
//!   `DROP TABLE`); `hot_standby_feedback=on` only removes those caused by vacuum.
//!
//! The actions are `async` (a test's load keeps running while a server is promoted): the
//! server commands are `std::process::Command`s on Tokio's blocking pool and the SQL goes
//! through `sea_orm`, so they need a Tokio runtime, of either flavour. `Drop` blocks (it
//! cannot await): it stops both servers (`pg_ctl -m immediate stop`, then SIGKILL if one
//! is somehow still there) and removes the folder, also when the test panicked. Folders
//! left by a test process that was itself killed are cleaned by the next `start`.

use crate::BoxError;
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The database made for the test on the primary (and so on the standby).
pub const DATABASE: &str = "jeton";

/// The standby's `application_name`, named by the primary's `synchronous_standby_names`;
/// also its replication slot.
pub const STANDBY_NAME: &str = "standby1";

/// Bound on every wait (a server starting, streaming, promoting, dying): generous, for a
/// loaded CI machine; reaching it is an error, never a pass.
const WAIT: Duration = Duration::from_secs(60);

/// How the standby follows the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names = 'standby1'`, `synchronous_commit = on`: a commit
    /// returns once the standby has flushed it.
    Synchronous,
    /// The standby streams, and the primary never waits for it.
    Asynchronous,
}

/// A primary and its standby, stopped and removed on drop. See the module documentation.
pub struct PgPair {
    dir: PathBuf,
    replication: Replication,
    primary: Server,
    standby: Server,
}

/// One PostgreSQL server of the pair.
struct Server {
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl PgPair {
    /// Makes, starts and connects a primary and its standby, and waits until the standby
    /// streams (synchronously for [`Replication::Synchronous`]). About 1.2 s in `/dev/shm`
    /// here.
    pub async fn start(replication: Replication) -> Result<Self, BoxError> {
        tokio::task::spawn_blocking(clean_leftovers).await?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = base_dir().join(format!(
            "jeton-pgpair-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| failed(format!("create {}: {e}", dir.display())))?;
        // From here on, `Drop` stops whatever was started if a later step fails.
        let mut pair = Self {
            primary: Server::new(&dir, "primary"),
            standby: Server::new(&dir, "standby"),
            dir,
            replication,
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pair.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&pair.dir);
            run("chown", chown).await?;
        }

        let mut initdb = pair.postgres_command("initdb");
        initdb
            .arg("-D")
            .arg(&pair.primary.data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]);
        run("initdb", initdb).await?;
        let conf = pair.primary.data.join("postgresql.conf");
        let settings = primary_settings(&pair.dir);
        let mut old = std::fs::read_to_string(&conf)?;
        old.push_str(&settings);
        std::fs::write(&conf, old)?;

        pair.primary.port = pair.start_on_a_free_port(Role::Primary).await?;
        crate::postgres::statement(
            &pair.primary.url("postgres"),
            &format!("CREATE DATABASE {DATABASE}"),
        )
        .await?;

        let mut basebackup = pair.postgres_command("pg_basebackup");
        basebackup
            .arg("-d")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres application_name={STANDBY_NAME}",
                pair.primary.port
            ))
            .arg("-D")
            .arg(&pair.standby.data)
            .args(["--write-recovery-conf", "--wal-method=stream"])
            .args(["--checkpoint=fast", "--no-sync"])
            .args(["--create-slot", "--slot", STANDBY_NAME]);
        run("pg_basebackup", basebackup).await?;
        let recovery = std::fs::read_to_string(pair.standby.data.join("postgresql.auto.conf"))?;
        if !recovery.contains(&format!("application_name={STANDBY_NAME}")) {
            return Err(failed(format!(
                "pg_basebackup -R wrote no application_name={STANDBY_NAME} in \
                 primary_conninfo:\n{recovery}"
            )));
        }
        pair.standby.port = pair.start_on_a_free_port(Role::Standby).await?;

        if replication == Replication::Synchronous {
            let primary = connect(&pair.primary.url("postgres")).await?;
            primary
                .execute_unprepared(&format!(
                    "ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"
                ))
                .await?;
            primary
                .execute_unprepared("SELECT pg_reload_conf()")
                .await?;
            primary.close().await?;
        }
        pair.wait_until_streaming().await?;
        Ok(pair)
    }

    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The folder holding both servers, their logs and sockets (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    pub fn standby_port(&self) -> u16 {
        self.standby.port
    }

    /// `postgres://postgres@127.0.0.1:PRIMARY/jeton`.
    pub fn primary_url(&self) -> String {
        self.primary.url(DATABASE)
    }

    /// `postgres://postgres@127.0.0.1:STANDBY/jeton`.
    pub fn standby_url(&self) -> String {
        self.standby.url(DATABASE)
    }

    /// Both hosts in libpq's multi-host form, primary first:
    /// `postgres://postgres@127.0.0.1:PRIMARY,127.0.0.1:STANDBY/jeton`.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}",
            self.primary.port, self.standby.port
        )
    }

    /// The primary's postmaster (from its `postmaster.pid`), while it runs.
    pub fn primary_pid(&self) -> Option<u32> {
        self.primary.pid()
    }

    /// The standby's postmaster (from its `postmaster.pid`), while it runs.
    pub fn standby_pid(&self) -> Option<u32> {
        self.standby.pid()
    }

    /// Everything the primary has logged.
    pub fn primary_log(&self) -> String {
        std::fs::read_to_string(&self.primary.log).unwrap_or_default()
    }

    /// Everything the standby has logged.
    pub fn standby_log(&self) -> String {
        std::fs::read_to_string(&self.standby.log).unwrap_or_default()
    }

    /// Kills the primary's postmaster and all its children with SIGKILL, and returns once
    /// they are gone and its port is free (connections are refused).
    pub async fn kill_primary(&self) -> Result<(), BoxError> {
        let pid = self
            .primary
            .pid()
            .ok_or_else(|| failed("kill_primary: the primary is not running".into()))?;
        let (data, port) = (self.primary.data.clone(), self.primary.port);
        tokio::task::spawn_blocking(move || {
            let killed = kill_server(pid, &data);
            let start = Instant::now();
            while killed.iter().any(|&p| alive(p)) || !port_is_free(port) {
                if start.elapsed() > WAIT {
                    return Err(failed(format!(
                        "kill_primary: after SIGKILL, processes {killed:?} or port {port} \
                         still there after {WAIT:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .await?
    }

    /// `pg_ctl promote` on the standby; returns once it accepts writes
    /// (`pg_is_in_recovery()` is false).
    pub async fn promote_standby(&self) -> Result<(), BoxError> {
        let mut promote = self.postgres_command("pg_ctl");
        promote.arg("-D").arg(&self.standby.data).args([
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
            "promote",
        ]);
        run("pg_ctl promote", promote)
            .await
            .map_err(|e| failed(format!("{e}\n{}", self.standby.log_tail())))?;
        let standby = connect(&self.standby.url("postgres")).await?;
        let start = Instant::now();
        #[derive(FromQueryResult)]
        struct Recovery {
            in_recovery: bool,
        }
        loop {
            let row = Recovery::find_by_statement(Statement::from_string(
                standby.get_database_backend(),
                "SELECT pg_is_in_recovery() AS in_recovery",
            ))
            .one(&standby)
            .await?;
            if row.is_some_and(|r| !r.in_recovery) {
                break;
            }
            if start.elapsed() > WAIT {
                return Err(failed(format!(
                    "promote_standby: still in recovery after {WAIT:?}\n{}",
                    self.standby.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        standby.close().await?;
        Ok(())
    }

    /// Stops the standby (`pg_ctl -m fast stop`). With [`Replication::Synchronous`], commits
    /// on the primary then wait until [`Self::start_standby`].
    pub async fn stop_standby(&self) -> Result<(), BoxError> {
        let mut stop = self.postgres_command("pg_ctl");
        stop.arg("-D").arg(&self.standby.data).args([
            "-m",
            "fast",
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
            "stop",
        ]);
        run("pg_ctl stop (standby)", stop).await?;
        Ok(())
    }

    /// Starts the stopped standby again on its port, and waits until it streams (in sync
    /// again, for [`Replication::Synchronous`]).
    pub async fn start_standby(&self) -> Result<(), BoxError> {
        self.start_server(Role::Standby).await?;
        self.wait_until_streaming().await
    }

    /// Starts a server on a port just found free; tries another if it was taken meanwhile.
    async fn start_on_a_free_port(&mut self, role: Role) -> Result<u16, BoxError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            self.server_mut(role).port = port;
            let logged = std::fs::metadata(&self.server(role).log).map_or(0, |m| m.len());
            match self.start_server(role).await {
                Ok(()) => return Ok(port),
                Err(e) => {
                    let log = std::fs::read(&self.server(role).log).unwrap_or_default();
                    let new = String::from_utf8_lossy(log.get(logged as usize..).unwrap_or(&[]));
                    if attempt >= 5 || !new.contains("could not bind") {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// `pg_ctl start -w` of one server on its port, logging to its log file.
    async fn start_server(&self, role: Role) -> Result<(), BoxError> {
        let server = self.server(role);
        let mut start = self.postgres_command("pg_ctl");
        start
            .arg("-D")
            .arg(&server.data)
            .arg("-l")
            .arg(&server.log)
            .arg("-o")
            .arg(format!("-p {}", server.port))
            .args(["-w", "-t", &WAIT.as_secs().to_string(), "start"]);
        run(&format!("pg_ctl start ({role:?})"), start)
            .await
            .map_err(|e| failed(format!("{e}\n{}", server.log_tail())))?;
        Ok(())
    }

    /// Waits until the primary's `pg_stat_replication` shows the standby streaming, and
    /// in sync for [`Replication::Synchronous`].
    async fn wait_until_streaming(&self) -> Result<(), BoxError> {
        #[derive(FromQueryResult, Debug)]
        struct Replicating {
            state: Option<String>,
            sync_state: Option<String>,
        }
        let wanted = match self.replication {
            Replication::Synchronous => "sync",
            Replication::Asynchronous => "async",
        };
        let primary = connect(&self.primary.url("postgres")).await?;
        let start = Instant::now();
        loop {
            let row = Replicating::find_by_statement(Statement::from_string(
                primary.get_database_backend(),
                format!(
                    "SELECT state, sync_state FROM pg_stat_replication \
                     WHERE application_name = '{STANDBY_NAME}'"
                ),
            ))
            .one(&primary)
            .await?;
            if let Some(Replicating {
                state: Some(state),
                sync_state: Some(sync),
            }) = &row
                && state == "streaming"
                && sync == wanted
            {
                break;
            }
            if start.elapsed() > WAIT {
                return Err(failed(format!(
                    "{STANDBY_NAME} not streaming ({wanted}) after {WAIT:?}: {row:?}\n{}\n{}",
                    self.primary.log_tail(),
                    self.standby.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        primary.close().await?;
        Ok(())
    }

    /// A PostgreSQL program run as `postgres` (through `runuser` when we are root), in the
    /// pair's folder, with no input.
    fn postgres_command(&self, program: &str) -> Command {
        let program = bin_dir().join(program);
        let mut cmd = if running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn server(&self, role: Role) -> &Server {
        match role {
            Role::Primary => &self.primary,
            Role::Standby => &self.standby,
        }
    }

    fn server_mut(&mut self, role: Role) -> &mut Server {
        match role {
            Role::Primary => &mut self.primary,
            Role::Standby => &mut self.standby,
        }
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for server in [&self.standby, &self.primary] {
            let Some(pid) = server.pid() else { continue };
            let mut stop = self.postgres_command("pg_ctl");
            stop.arg("-D")
                .arg(&server.data)
                .args(["-m", "immediate", "-w", "-t", "10", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = stop.status();
            if alive(pid) {
                kill_server(pid, &server.data);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Primary,
    Standby,
}

impl Server {
    fn new(dir: &Path, name: &str) -> Self {
        Self {
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            port: 0,
        }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        postmaster_pid(&self.data)
    }

    /// The end of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- {} (end) ---\n{tail}", self.log.display())
    }
}

/// The primary's settings, appended to `postgresql.conf` (and so copied to the standby by
/// the base backup).
fn primary_settings(dir: &Path) -> String {
    format!(
        "
# jeton-testkit pgpair
listen_addresses = '127.0.0.1'
unix_socket_directories = '{dir}'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
hot_standby_feedback = on
synchronous_commit = on
# Two jeton replicas with a pool per host, plus the test's own connections.
max_connections = 200
shared_buffers = 16MB
# Only a machine crash could tell: see the module documentation.
fsync = off
",
        dir = dir.display()
    )
}

/// Where the PostgreSQL server programs are: `JETON_TEST_PG_BIN`, by default PostgreSQL 15's.
fn bin_dir() -> PathBuf {
    std::env::var_os("JETON_TEST_PG_BIN")
        .map_or_else(|| "/usr/lib/postgresql/15/bin".into(), PathBuf::from)
}

/// Where pairs are made: see the module documentation.
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JETON_TEST_PG_DIR") {
        return dir.into();
    }
    let shm_free = Command::new("df")
        .args(["-B1", "--output=avail", "/dev/shm"])
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().nth(1)?.trim().parse::<u64>().ok()
        });
    if shm_free.is_some_and(|bytes| bytes >= 1 << 30) {
        "/dev/shm".into()
    } else {
        "/tmp".into()
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `cmd` on the blocking pool; its output, or an error with the command and its output.
async fn run(what: &str, mut cmd: Command) -> Result<String, BoxError> {
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .map_err(|e| failed(format!("{what}: could not run {shown}: {e}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(failed(format!(
            "{what} failed ({}): {shown}\n{text}",
            out.status
        )))
    }
}

/// One connection to a server of the pair, for the harness's own SQL.
async fn connect(url: &str) -> Result<DatabaseConnection, BoxError> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    Ok(sea_orm::Database::connect(options).await?)
}

/// The postmaster of the data folder `data`, if `postmaster.pid` names a live process that
/// is that server (a pid reused by anything else does not count).
fn postmaster_pid(data: &Path) -> Option<u32> {
    let file = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = file.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_it = String::from_utf8_lossy(&cmdline).contains(&*data.to_string_lossy());
    (is_it && alive(pid)).then_some(pid)
}

/// Whether `pid` is a process that has not exited (a zombie waiting for its parent to
/// reap it has exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| process_state(&stat).is_some_and(|(state, _)| state != "Z"))
}

/// State and parent pid from a `/proc/PID/stat` line (the name in parentheses may hold
/// spaces).
fn process_state(stat: &str) -> Option<(&str, u32)> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Kills the postmaster `pid` of `data` and all its children at once with SIGKILL; returns
/// the pids killed. PostgreSQL's children leave the postmaster's process group (each calls
/// `setsid`), so they are found by parent pid, with the postmaster stopped meanwhile so it
/// cannot start one more.
fn kill_server(pid: u32, data: &Path) -> Vec<u32> {
    if postmaster_pid(data) != Some(pid) {
        return Vec::new();
    }
    let signal = |sig: &str, pids: &[u32]| {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    };
    signal("STOP", &[pid]);
    let mut pids = vec![pid];
    pids.extend(children(pid));
    signal("KILL", &pids);
    pids
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| {
            let child = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, ppid) = process_state(&stat)?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Removes the pairs of test processes that are gone (killed before their `Drop` ran): stops
/// their servers, then their folders. Pairs of live processes are left alone.
fn clean_leftovers() {
    let mut bases = vec![base_dir()];
    for base in ["/dev/shm", "/tmp"] {
        if !bases.iter().any(|b| b.as_path() == Path::new(base)) {
            bases.push(base.into());
        }
    }
    let entries = bases
        .iter()
        .filter_map(|b| std::fs::read_dir(b).ok())
        .flatten();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix("jeton-pgpair-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || alive(owner) {
            continue;
        }
        for server in ["primary", "standby"] {
            let data = entry.path().join(server);
            if let Some(pid) = postmaster_pid(&data) {
                let killed = kill_server(pid, &data);
                let start = Instant::now();
                while killed.iter().any(|&p| alive(p)) && start.elapsed() < WAIT {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// An error whose `Debug` is its text, so that a test's `unwrap()` shows a command's output
/// and a server's log line by line.
struct Failed(String);

impl std::fmt::Debug for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

fn failed(text: String) -> BoxError {
    Box::new(Failed(text))
}

#[cfg(test)]
mod tests;
