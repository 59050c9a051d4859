//! Connections that say nothing cost nothing: they are closed after the handshake timeout,
//! the accept loop backs off instead of spinning when file descriptors run out, a request
//! whose body does not come is cut at the HTTP request deadline, and a real client is still
//! served.

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

/// Requests whose body never comes cannot hold the HTTP listener: a flood of them, more
/// than it has places, each sending `POST /oauth2/introspect` headers with a
/// `Content-Length` and then nothing, is answered 408 and closed once
/// `--http-request-timeout` has passed, and a legitimate forward-auth sent behind the flood
/// is answered as soon as their places free (without the deadline it waits as long as
/// they keep their connections open: for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_at_the_request_deadline_and_a_forward_auth_gets_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DEADLINE: Duration = Duration::from_secs(8);
    // Both ends of every connection are in this process: as many connections as half the
    // descriptors allow, keeping some for the server's database and the runtime, and no more
    // than open well within the deadline on a busy machine.
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let places = usize::try_from(files.saturating_sub(400) / 2)
        .unwrap()
        .clamp(100, 4000);
    // Beyond the places: these wait in the kernel's backlog, in front of the legitimate
    // request.
    let slow_count = places + 50;
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
        s.connection_limit = u32::try_from(places).unwrap();
        s.http_request_timeout = DEADLINE;
    })
    .await;
    let front = app.http.unwrap();

    let head = std::sync::Arc::new(format!(
        "POST /oauth2/introspect HTTP/1.1\r\nhost: {front}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\n"
    ));
    // Opened a few hundred at a time, so that the whole flood is in before the first of it
    // reaches the deadline, without overflowing the kernel's queue of half-open connections.
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let flood_began = Instant::now();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..slow_count {
        let (head, opening, sent_tx) = (head.clone(), opening.clone(), sent_tx.clone());
        slow.spawn(async move {
            let permit = opening.acquire_owned().await.unwrap();
            let mut s = tokio::net::TcpStream::connect(front).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let sent = Instant::now();
            drop(permit);
            let _ = sent_tx.send(());
            // What the server answers, and how long after the headers it closed the
            // connection.
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            (
                String::from_utf8_lossy(&answer).into_owned(),
                sent.elapsed(),
            )
        });
    }
    drop(sent_tx);
    for _ in 0..slow_count {
        sent_rx.recv().await.unwrap();
    }
    let opened_in = flood_began.elapsed();
    assert!(
        opened_in < DEADLINE / 2,
        "the flood took {opened_in:?} to open: too slow to hold every place at once"
    );

    // Behind the flood, a legitimate forward-auth.
    let bearer = format!("Bearer {}", app.admin);
    let legit = tokio::time::timeout(
        DEADLINE * 5,
        http(
            front,
            "GET",
            "/v1/forward-auth?namespace=api",
            &[("authorization", &bearer)],
            "",
        ),
    )
    .await;
    let waited = flood_began.elapsed();
    let legit = legit.unwrap_or_else(|_| {
        panic!("a forward-auth behind {slow_count} slow bodies was not answered in {waited:?}")
    });
    assert_eq!(legit.status, 200, "{}", legit.body);
    // It did wait for places: the flood held them all until its deadline.
    assert!(
        waited > DEADLINE - Duration::from_millis(250),
        "answered after {waited:?}: the flood did not fill the listener"
    );

    // Every slow request was answered 408 and closed, not before the deadline; those that
    // waited in the backlog, a deadline after they were let in.
    let mut early = Vec::new();
    let mut not_408 = Vec::new();
    while let Some(done) = tokio::time::timeout(DEADLINE * 5, slow.join_next())
        .await
        .unwrap_or_else(|_| panic!("{} slow connections still open", slow.len()))
    {
        let (answer, after) = done.unwrap();
        if !answer.starts_with("HTTP/1.1 408") {
            not_408.push(answer);
        }
        // The server counts from when it took the connection, a moment before the headers
        // were sent.
        if after < DEADLINE - Duration::from_millis(250) {
            early.push(after);
        }
    }
    assert!(
        not_408.is_empty(),
        "{} slow requests not answered 408, e.g. {:?}",
        not_408.len(),
        not_408.first()
    );
    assert!(early.is_empty(), "cut before the deadline: {early:?}");
}
