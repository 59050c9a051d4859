//! What jeton costs at the gate: a real nginx (the front) in front of a trivial service,
//! reached by three routes of the front — unguarded, guarded by a free authorizer (an
//! `auth_request` answered 204 at once), and guarded by jeton's `/v1/forward-auth` with a
//! valid, cached token — each with keep-alive to whatever it talks to, as
//! `deploy/nginx/jeton.conf` ships. The service and the free authorizer are server blocks
//! of a second nginx (the back), so that both authorizers are another process than the
//! front, which does the very same work on both guarded routes: jeton / free is jeton's own
//! price. `wrk` (an HTTP load generator in C) drives each route
//! in alternating windows (U F J, F J U, J U F, …), so the machine's noise falls on all
//! three alike; the table shows medians. Beside requests a second it shows what each request
//! cost the server core (nginx's processes and jeton, from `/proc`): on a shared machine the
//! load generator's core is not always its own, and the CPU cost per request does not depend
//! on how fast requests came.

use super::{Ctx, flags};
use crate::report::{median, table};
use jeton_testkit::BoxError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Client connections wrk keeps open to nginx, one row each.
const CONNECTIONS: [usize; 2] = [32, 256];
/// Idle connections nginx keeps to each upstream: more than the busiest row has requests in
/// flight, so that no route opens and closes connections per request (beyond it nginx
/// does, and that churn, not the authorizer, would dominate the 256-connection row).
const KEEPALIVE: usize = 512;
/// Unrecorded load on each route before a row's windows.
const WARMUP: Duration = Duration::from_secs(1);

/// The three routes, in the order of the first rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Unguarded,
    Free,
    Jeton,
}

impl Route {
    const ALL: [Route; 3] = [Route::Unguarded, Route::Free, Route::Jeton];

    fn path(self) -> &'static str {
        match self {
            Route::Unguarded => "/unguarded/",
            Route::Free => "/free/",
            Route::Jeton => "/jeton/",
        }
    }
}

/// What one wrk window measured.
#[derive(Debug)]
struct Window {
    per_sec: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// jeton's CPU time over the window.
    jeton_cpu: Duration,
    /// The CPU time of both nginx (masters and workers) over the window.
    nginx_cpu: Duration,
}

impl Window {
    fn us_per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    // Before anything starts: both tools, or a clear refusal.
    let nginx = find("nginx").ok_or(
        "nginx is not installed: the gate scenario runs a real nginx \
         (Debian/Ubuntu: apt-get install -y nginx)",
    )?;
    let wrk = find("wrk").ok_or(
        "wrk is not installed: the gate scenario drives nginx with wrk \
         (Debian/Ubuntu: apt-get install -y wrk)",
    )?;
    let db = ctx.sqlite("gate.db");
    let token = ctx.bootstrap(&db)?;
    let args = flags(&[
        ("--http-listen", "127.0.0.1:0".into()),
        ("--cache-ttl", "1h".into()),
        ("--last-use-flush-interval", "1h".into()),
    ]);
    let server = ctx.serve(&db, true, &args)?;
    let jeton = server
        .http_addr()
        .ok_or("jeton serve logged no HTTP listener")?;
    let proxy = Gate::start(
        &nginx,
        &ctx.dir.path().join("gate"),
        &jeton,
        ctx.pinning.server_core(),
    )?;
    let bearer = format!("Authorization: Bearer {token}");
    check_routes(&wrk, &proxy, &bearer).await?;

    let windows = CONNECTIONS.len() * ctx.args.repeats as usize * Route::ALL.len();
    let bar = ctx
        .progress
        .counter(windows as u64, "unguarded / free / jeton windows");
    let mut rows = Vec::new();
    for conns in CONNECTIONS {
        for route in Route::ALL {
            run_wrk(&wrk, &proxy, route, &bearer, conns, WARMUP).await?;
        }
        let mut by_route: [Vec<Window>; 3] = Default::default();
        for r in 0..ctx.args.repeats as usize {
            for i in 0..Route::ALL.len() {
                let route = Route::ALL[(i + r) % Route::ALL.len()];
                let before = (server.cpu(), proxy.cpu());
                let window = Duration::from_secs(ctx.args.seconds);
                let mut w = run_wrk(&wrk, &proxy, route, &bearer, conns, window).await?;
                w.jeton_cpu = server.cpu().saturating_sub(before.0);
                w.nginx_cpu = proxy.cpu().saturating_sub(before.1);
                by_route[route as usize].push(w);
                bar.inc(1);
            }
        }
        rows.push(row(conns, &by_route));
    }
    bar.finish();
    let log = proxy.stop();
    server.stop()?;
    if log.contains("[emerg]") || log.contains("[alert]") || log.contains("[crit]") {
        return Err(format!("nginx complained during the run:\n{log}").into());
    }
    Ok(render(ctx, &rows))
}

/// `program` on the PATH or in /usr/sbin (Debian's nginx, missing from a non-root PATH).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Each route answers what it should before anything is measured: 200 with the token on
/// all three, and 401 without it on jeton's (the guard is real). A window whose requests
/// were refused would measure refusals.
async fn check_routes(wrk: &Path, proxy: &Gate, bearer: &str) -> Result<(), BoxError> {
    for route in Route::ALL {
        let status = get(proxy.port, route.path(), Some(bearer))?;
        if status != 200 {
            return Err(format!(
                "{} answered {status} with the token\n{}",
                route.path(),
                proxy.log()
            )
            .into());
        }
    }
    let status = get(proxy.port, Route::Jeton.path(), None)?;
    if status != 401 {
        return Err(format!(
            "{} answered {status} without a token, not 401",
            Route::Jeton.path()
        )
        .into());
    }
    // And wrk itself runs (one short burst).
    run_wrk(
        wrk,
        proxy,
        Route::Unguarded,
        bearer,
        1,
        Duration::from_secs(1),
    )
    .await?;
    Ok(())
}

/// One HTTP/1.1 GET on a fresh connection; the status.
fn get(port: u16, path: &str, header: Option<&str>) -> Result<u16, BoxError> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let header = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gate\r\n{header}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}").into())
}

/// `wrk -t1 -c<conns> -d<window> --latency -H <bearer>` on `route`; fails on any socket
/// error or any answer other than 2xx/3xx.
async fn run_wrk(
    wrk: &Path,
    proxy: &Gate,
    route: Route,
    bearer: &str,
    conns: usize,
    window: Duration,
) -> Result<Window, BoxError> {
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", &format!("-c{conns}")])
        .arg(format!("-d{}s", window.as_secs().max(1)))
        .args(["--timeout", "10s", "--latency", "-H", bearer])
        .arg(format!("http://127.0.0.1:{}{}", proxy.port, route.path()));
    // wrk blocks for the whole window: off the async worker.
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    parse_wrk(&text)
        .map_err(|e| format!("{} with {conns} connections: {e}\n{text}", route.path()).into())
}

/// The figures of wrk's report.
fn parse_wrk(text: &str) -> Result<Window, String> {
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        return Err(format!("refused requests ({})", line.trim()));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        return Err(format!("socket errors ({})", line.trim()));
    }
    let value = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| format!("no {prefix:?} line"))
    };
    let per_sec: f64 = value("Requests/sec:")?
        .parse()
        .map_err(|e| format!("Requests/sec: {e}"))?;
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no request count")?;
    Ok(Window {
        per_sec,
        requests,
        p50_ms: millis(value("50%")?)?,
        p99_ms: millis(value("99%")?)?,
        jeton_cpu: Duration::ZERO,
        nginx_cpu: Duration::ZERO,
    })
}

/// wrk's `1.23ms`, `456.00us`, `1.20s` in milliseconds.
fn millis(s: &str) -> Result<f64, String> {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("m") {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(format!("not a duration: {s:?}"));
    };
    number
        .parse::<f64>()
        .map(|n| n * scale)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// One row's medians.
struct Row {
    conns: usize,
    rate: [f64; 3],
    /// Half the range of each route's windows, as a fraction of its median.
    spread: [f64; 3],
    p50: [f64; 3],
    p99: [f64; 3],
    /// CPU of the server core (nginx and jeton) per request, µs.
    cost: [f64; 3],
    jeton_cpu_us: f64,
}

fn row(conns: usize, by_route: &[Vec<Window>; 3]) -> Row {
    let med = |ws: &Vec<Window>, f: fn(&Window) -> f64| median(ws.iter().map(f).collect());
    let spread = |ws: &Vec<Window>| {
        let rates: Vec<f64> = ws.iter().map(|w| w.per_sec).collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        (hi - lo) / 2.0 / median(rates).max(f64::MIN_POSITIVE)
    };
    let jeton = &by_route[Route::Jeton as usize];
    Row {
        conns,
        rate: by_route.each_ref().map(|ws| med(ws, |w| w.per_sec)),
        spread: by_route.each_ref().map(spread),
        p50: by_route.each_ref().map(|ws| med(ws, |w| w.p50_ms)),
        p99: by_route.each_ref().map(|ws| med(ws, |w| w.p99_ms)),
        cost: by_route
            .each_ref()
            .map(|ws| med(ws, |w| w.us_per_request(w.jeton_cpu + w.nginx_cpu))),
        jeton_cpu_us: median(
            jeton
                .iter()
                .map(|w| w.us_per_request(w.jeton_cpu))
                .collect(),
        ),
    }
}

fn render(ctx: &Ctx, rows: &[Row]) -> String {
    let (u, f, j) = (
        Route::Unguarded as usize,
        Route::Free as usize,
        Route::Jeton as usize,
    );
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let rate = |i: usize| format!("{:.0} ±{:.0}%", r.rate[i], r.spread[i] * 100.0);
            let lat = |i: usize| format!("{:.2} / {:.2}", r.p50[i], r.p99[i]);
            let ratio = |a: usize, b: usize| r.rate[a] / r.rate[b].max(f64::MIN_POSITIVE);
            let cost_ratio = r.cost[f] / r.cost[j].max(f64::MIN_POSITIVE);
            vec![
                r.conns.to_string(),
                rate(u),
                rate(f),
                rate(j),
                format!("**{:.2}**", ratio(j, f)),
                format!("{:.2}", ratio(j, u)),
                format!("{:.2}", ratio(f, u)),
                format!("{} · {} · {}", lat(u), lat(f), lat(j)),
                format!("{:.1} · {:.1} · {:.1}", r.cost[u], r.cost[f], r.cost[j]),
                format!("**{cost_ratio:.2}**"),
                format!("{:.1}", r.jeton_cpu_us),
            ]
        })
        .collect();
    let pinned = if ctx.pinning.server_core().is_some() {
        "Both nginx and jeton are pinned to the server core, wrk (one thread) runs on the \
         load generator's core"
    } else {
        "nothing is pinned"
    };
    format!(
        "## {}\n\nTwo real nginx ({}), one worker each. The back serves the service (a \
         location answering `200 ok`) and a free authorizer (a location answering 204). The \
         front's routes `/unguarded/`, `/free/` and `/jeton/` all proxy to the service; \
         `/free/` first asks the free authorizer with `auth_request`, `/jeton/` asks jeton's \
         `/v1/forward-auth` the same way, both copying the four `X-Jeton-*` headers as \
         `deploy/nginx/jeton.conf` does, so the front does the same work on both and only \
         the authorizer differs. jeton has the token cached (`--cache-ttl 1h`, \
         `--last-use-flush-interval 1h`, SQLite). Every upstream has `keepalive {KEEPALIVE}` \
         (more than the requests in flight) with HTTP/1.1 and an empty `Connection` header, \
         so no route opens a connection per request. {pinned}. Every request carries the \
         token. `wrk -t1 -c<connections> --latency` drives one route per window of {} s; \
         each route gets {} windows per row, the routes alternating in a rotating order (U F \
         J, F J U, J U F, …), after {} s of unrecorded load on each; a window with any \
         refused request or socket error fails the run. The table shows the median window per route (± half the \
         range of its windows), ratios of those medians, the medians of wrk's p50 and p99, \
         the server core's CPU per request (user + system of both nginx and of jeton, from \
         `/proc`, 10 ms ticks; median window; the kernel's network work done in softirq \
         belongs to no process and is not counted), the free route's CPU per request \
         over jeton's (the throughput ratio the two would have on a core of their own), and \
         jeton's own CPU per request of the jeton windows. Target: jeton / free authorizer \
         ≥ 0.9.\n\n{}",
        super::Scenario::Gate.title(),
        nginx_version(),
        ctx.args.seconds,
        ctx.args.repeats,
        WARMUP.as_secs(),
        table(
            &[
                "connections",
                "unguarded req/s",
                "free authorizer req/s",
                "jeton req/s",
                "jeton / free",
                "jeton / unguarded",
                "free / unguarded",
                "p50 / p99 ms: unguarded · free · jeton",
                "server CPU µs per request: unguarded · free · jeton",
                "free / jeton CPU per request",
                "jeton's own CPU µs per request",
            ],
            &body,
        )
    )
}

/// "nginx 1.22.1", from `nginx -v`.
fn nginx_version() -> String {
    find("nginx")
        .and_then(|p| Command::new(p).arg("-v").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_else(|| "nginx".into())
}

/// The two nginx of the scenario: the front, whose routes are measured, and the back, which
/// serves the service and the free authorizer.
struct Gate {
    front: Nginx,
    back: Nginx,
    /// The front's port.
    port: u16,
}

impl Gate {
    fn start(program: &Path, dir: &Path, jeton: &str, core: Option<u32>) -> Result<Self, BoxError> {
        let [front, service, free] = free_ports()?;
        let back = Nginx::start(
            program,
            &dir.join("back"),
            &back_config(service, free),
            service,
            core,
        )?;
        let front_nginx = Nginx::start(
            program,
            &dir.join("front"),
            &front_config(front, service, free, jeton),
            front,
            core,
        )?;
        Ok(Self {
            front: front_nginx,
            back,
            port: front,
        })
    }

    fn cpu(&self) -> Duration {
        self.front.cpu() + self.back.cpu()
    }

    fn log(&self) -> String {
        format!("front:\n{}back:\n{}", self.front.log(), self.back.log())
    }

    /// Stops both; what they logged.
    fn stop(mut self) -> String {
        self.front.terminate();
        self.back.terminate();
        self.log()
    }
}

/// An nginx running a configuration written for it, its prefix (`-p`) a directory of its
/// own; stopped (SIGTERM, which stops its worker too) when dropped.
struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `config` and waits until it accepts connections on `port`.
    fn start(
        program: &Path,
        dir: &Path,
        config: &str,
        port: u16,
        core: Option<u32>,
    ) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config)?;
        let mut cmd = match core {
            Some(core) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &core.to_string()]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("nginx.log"))?)
            .stderr(std::fs::File::create(dir.join("nginx.err"))?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut nginx = Self {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = nginx
                .child
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()?
                .flatten();
            if let Some(status) = exited {
                return Err(format!("nginx exited at start ({status}):\n{}", nginx.log()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("nginx not listening within 10 s:\n{}", nginx.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx.err")).unwrap_or_default()
    }

    /// User + system CPU time of the master and its worker so far.
    fn cpu(&self) -> Duration {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return Duration::ZERO;
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Duration::ZERO;
        };
        let ticks: u64 = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // After the command's closing parenthesis: state, ppid, …, utime (12th),
                // stime (13th).
                let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
                let ppid: u32 = fields.get(1)?.parse().ok()?;
                (pid == master || ppid == master).then(|| {
                    let at = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
                    at(11).unwrap_or(0) + at(12).unwrap_or(0)
                })
            })
            .sum();
        Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux, as testkit's Served
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Three ports free a moment ago (bound together, then released for nginx to take).
fn free_ports() -> Result<[u16; 3], BoxError> {
    let listeners = [(); 3].map(|()| std::net::TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener?.local_addr()?.port();
    }
    Ok(ports)
}

/// What both nginx.conf share: foreground, one worker, relative paths under the `-p`
/// prefix, clients keeping their connections for a whole window.
fn common(servers: &str) -> String {
    format!(
        "daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
{servers}}}
"
    )
}

/// The back: the service (a short 200) and the free authorizer (204).
fn back_config(service: u16, free: u16) -> String {
    common(&format!(
        "    server {{
        listen 127.0.0.1:{service};
        location / {{
            return 200 \"ok\\n\";
        }}
    }}
    server {{
        listen 127.0.0.1:{free};
        location / {{
            return 204;
        }}
    }}
"
    ))
}

/// The front: the three routes, keep-alive to the service, the free authorizer and jeton.
fn front_config(front: u16, service: u16, free: u16, jeton: &str) -> String {
    // The lines both guarded routes share, so that they cost the front the same.
    let guarded = |auth: &str| {
        format!(
            "            auth_request {auth};
            auth_request_set $jeton_tenant $upstream_http_x_jeton_tenant;
            auth_request_set $jeton_subject $upstream_http_x_jeton_subject;
            auth_request_set $jeton_token_id $upstream_http_x_jeton_token_id;
            auth_request_set $jeton_scopes $upstream_http_x_jeton_scopes;
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Jeton-Tenant $jeton_tenant;
            proxy_set_header X-Jeton-Subject $jeton_subject;
            proxy_set_header X-Jeton-Token-Id $jeton_token_id;
            proxy_set_header X-Jeton-Scopes $jeton_scopes;
            proxy_set_header Authorization \"\";"
        )
    };
    let subrequest = |upstream: &str| {
        format!(
            "            internal;
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;"
        )
    };
    common(&format!(
        "    upstream service {{
        server 127.0.0.1:{service};
        keepalive {KEEPALIVE};
    }}
    upstream free {{
        server 127.0.0.1:{free};
        keepalive {KEEPALIVE};
    }}
    upstream jeton {{
        server {jeton};
        keepalive {KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{front};
        location /unguarded/ {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
        location /free/ {{
{free_route}
        }}
        location /jeton/ {{
{jeton_route}
        }}
        location = /_free {{
{free_auth}
        }}
        location = /_jeton {{
{jeton_auth}
        }}
    }}
",
        free_route = guarded("/_free"),
        jeton_route = guarded("/_jeton"),
        free_auth = subrequest("http://free"),
        jeton_auth = subrequest("http://jeton/v1/forward-auth?namespace=api&scopes="),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_is_read() {
        let report = "Running 5s test @ http://127.0.0.1:8000/jeton/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.95ms    1.03ms  21.53ms   86.10%
    Req/Sec     6.48k   310.53     6.98k    68.00%
  Latency Distribution
     50%    4.78ms
     75%    5.27ms
     90%    5.96ms
     99%  850.00us
  32251 requests in 5.00s, 3.60MB read
Requests/sec:   6447.79
Transfer/sec:    736.78KB
";
        let w = parse_wrk(report).unwrap();
        assert_eq!(w.requests, 32251);
        assert!((w.per_sec - 6447.79).abs() < 1e-6);
        assert!((w.p50_ms - 4.78).abs() < 1e-9);
        assert!((w.p99_ms - 0.85).abs() < 1e-9);
        let refused = format!("{report}  Non-2xx or 3xx responses: 12\n");
        assert!(parse_wrk(&refused).unwrap_err().contains("refused"));
        let errors = format!("{report}  Socket errors: connect 0, read 3, write 0, timeout 0\n");
        assert!(parse_wrk(&errors).unwrap_err().contains("socket errors"));
    }

    #[test]
    fn wrk_durations_in_milliseconds() {
        assert_eq!(millis("250.00us"), Ok(0.25));
        assert_eq!(millis("1.50ms"), Ok(1.5));
        assert_eq!(millis("2.00s"), Ok(2000.0));
        assert!(millis("fast").is_err());
    }
}
