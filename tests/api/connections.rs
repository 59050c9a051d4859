//! Connections that say nothing cost nothing: they are closed after the handshake timeout,
//! the accept loop backs off instead of spinning when file descriptors run out, and a real
//! client is still served.

use crate::helpers::*;
use crate::logs::{JETON, bootstrap, connect};
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::served::Served;
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether the server closed `s` (end of stream or a reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    !matches!(s.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_do_not_spin_the_server_out_of_descriptors() {
    // This process opens more sockets than the server may have.
    rlimit::increase_nofile_limit(4096).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("j.db").display());
    let (admin, _) = bootstrap(&db, TENANT, ADMIN, "warn");
    let mut cmd = Command::new("prlimit");
    cmd.args([
        "--nofile=1024:1024",
        JETON,
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--handshake-timeout", "10s", "--argon2-memory-kib", "256"])
    .env("JETON_DATABASE_URL", &db)
    .env("JETON_LOG_FORMAT", "pretty")
    .env("JETON_LOG", "warn,jeton::app=info");
    let server = Served::start(cmd);
    let addr = server.addr().to_owned();

    // 1100 connections that never send a byte: more than the server has descriptors.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(&addr).unwrap());
    }
    // Until it runs out of descriptors (it accepts what it can, the kernel holds the rest).
    server.log_when(Duration::from_secs(4), |log| {
        log.contains("accepting a connection failed; backing off")
    });
    // Out of descriptors, with a backlog of connections it cannot accept: it waits, it does
    // not spin. A spinning accept loop burns a whole core; waiting costs a retry every 100 ms.
    // Measured over 2 s after the accepts have settled, with a bound far below a spin and far
    // above what a shared machine's scheduling noise adds.
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = server.cpu();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = server.cpu().saturating_sub(cpu0);
    assert!(
        cpu < Duration::from_millis(300),
        "the server spent {cpu:?} of CPU in 2 s on idle connections (a spin is 2 s)"
    );

    // Every one is closed by the server within the deadline (those the kernel held in the
    // backlog once accepted, a deadline later).
    let start = Instant::now();
    let mut open = 0;
    for s in &mut idle {
        let left = Duration::from_secs(25).saturating_sub(start.elapsed());
        if !closed_by_server(s, left.max(Duration::from_millis(10))) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "idle connections still open");
    drop(idle);

    // And a real client is served.
    let v = TokenServiceClient::new(connect(&addr).await)
        .validate(proto::ValidateRequest {
            token: admin,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.valid);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
}

// Multi-threaded: the in-process server runs while this test blocks on a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_to_the_tls_port_is_closed_after_the_handshake_timeout() {
    let app = TestApp::spawn_with(Transport::Tls, |s| {
        s.handshake_timeout = Duration::from_millis(500);
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    for addr in [app.addr, app.http.unwrap()] {
        let mut silent = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        assert!(
            closed_by_server(&mut silent, Duration::from_secs(5)),
            "{addr}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "closed after {:?}",
            start.elapsed()
        );
    }
    // A client that does speak is served as before.
    assert!(
        app.validate(&app.admin, proto::Namespace::Api, &[])
            .await
            .valid
    );
}
