//! Bad input against a real server: garbage bytes, truncated, corrupted and oversized frames
//! (just over the limit: an error reply; far over it: the connection dropped by NNG before the
//! body is read),
//! an unsupported protocol version, a reply sent as a request, unknown session and prepared
//! statement ids, and a client that disappears mid-transaction. Each gets a clear error reply
//! and the server keeps serving others and loses nothing.

mod net_support;
use net_support::*;

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

use anng::protocols::reqrep0::Req0;
use ormdb::ir::protocol::{decode, encode, encode_message, Body, Message};
use ormdb::net::Client;
use ormdb::{Params, SqlState, Value};

/// Sends raw bytes on a fresh REQ socket; the reply, or None when none came in `wait`.
async fn raw(url: &str, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = Req0::dial(CString::new(url).unwrap()).await.unwrap();
    let mut ctx = socket.context();
    let mut msg = anng::Message::with_capacity(bytes.len());
    msg.write_all(bytes).unwrap();
    let exchange = async {
        let reply = ctx.request(msg).await.map_err(|(e, _)| e)?;
        reply.await
    };
    match tokio::time::timeout(wait, exchange).await {
        Ok(Ok(m)) => Some(m.as_slice().to_vec()),
        _ => None,
    }
}

/// Decodes an error reply into (code, message).
fn error_of(reply: &[u8]) -> (String, String) {
    match decode(reply)
        .expect("the reply itself is a valid frame")
        .body
    {
        Body::Error { code, message } => (code, message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

async fn still_serving(c: &Client) {
    let r = c.sql("SELECT count(*) FROM t", Params::None).await.unwrap();
    assert_eq!(r.rows.len(), 1);
}

#[test]
fn malformed_frames_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-request-bytes", "65536"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.tcp).await.unwrap();
        c.sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            Params::None,
        )
        .await
        .unwrap();
        let wait = Duration::from_secs(10);
        for url in [&server.tcp, &server.ipc] {
            // Garbage.
            let reply = raw(url, b"\x00\xffhello, not a frame at all", wait)
                .await
                .unwrap();
            let (code, msg) = error_of(&reply);
            assert_eq!(code, "08P01", "{msg}");
            assert!(msg.contains("invalid message"), "{msg}");
            let reply = raw(url, b"", wait).await.unwrap();
            assert_eq!(error_of(&reply).0, "08P01");

            // Truncated: the frame announces more bytes than arrived.
            let good = encode(&Body::Sql {
                session: 0,
                sql: "SELECT 1".into(),
                params: Params::None,
            })
            .unwrap();
            let reply = raw(url, &good[..good.len() - 3], wait).await.unwrap();
            let (code, msg) = error_of(&reply);
            assert_eq!(code, "08P01");
            assert!(msg.contains("announces"), "{msg}");

            // Corrupted payload: the checksum catches it.
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x5a;
            let (code, msg) = error_of(&raw(url, &bad, wait).await.unwrap());
            assert_eq!(code, "08P01");
            assert!(msg.contains("checksum"), "{msg}");

            // Just over the server's configured request limit: within what NNG lets through
            // (its limit has room for REQ's header), so the handler answers 54000.
            let just_over = (65_400..)
                .map(|n| {
                    encode(&Body::Sql {
                        session: 0,
                        sql: format!("SELECT '{}'", "x".repeat(n)),
                        params: Params::None,
                    })
                    .unwrap()
                })
                .find(|f| f.len() > 65_536)
                .unwrap();
            let (code, msg) = error_of(&raw(url, &just_over, wait).await.unwrap());
            assert_eq!(code, "54000");
            assert!(msg.contains("exceeds the server's limit"), "{msg}");

            // Far over it, framed or not: NNG drops the connection on reading the length,
            // before buffering the body, so no reply comes; the server goes on.
            let big = encode(&Body::Sql {
                session: 0,
                sql: format!("SELECT '{}'", "x".repeat(100_000)),
                params: Params::None,
            })
            .unwrap();
            let short = Duration::from_secs(2);
            assert!(raw(url, &big, short).await.is_none());
            let huge = vec![7u8; 2 * 1024 * 1024];
            assert!(raw(url, &huge, short).await.is_none());
            still_serving(&c).await;

            // A version this server does not speak.
            let v99 = encode_message(&Message {
                version: 99,
                body: Body::Metrics,
            })
            .unwrap();
            let (code, msg) = error_of(&raw(url, &v99, wait).await.unwrap());
            assert_eq!(code, "08P01");
            assert!(
                msg.contains("protocol version 99 is not supported"),
                "{msg}"
            );

            // A reply sent as a request.
            let reply_body = encode(&Body::Done).unwrap();
            let (code, msg) = error_of(&raw(url, &reply_body, wait).await.unwrap());
            assert_eq!(code, "08P01");
            assert!(msg.contains("is a reply, not a request"), "{msg}");

            still_serving(&c).await;
        }

        // The client learned the limit in the handshake and refuses before sending.
        let e = c
            .sql(&format!("SELECT '{}'", "x".repeat(70_000)), Params::None)
            .await
            .unwrap_err();
        assert_eq!(e.state, SqlState::LimitExceeded, "{e}");

        // So does the blocking client (the one `net::connect` and Python's connect() use),
        // naming the limit.
        let bc = ormdb::net::BlockingClient::connect(&server.ipc).unwrap();
        let e = bc
            .sql_in(0, &format!("SELECT '{}'", "x".repeat(70_000)), Params::None)
            .unwrap_err();
        assert_eq!(e.state, SqlState::LimitExceeded, "{e}");
        assert!(e.message.contains("limit of 65536 bytes"), "{e}");
        let r = bc.sql_in(0, "SELECT 1", Params::None).unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);

        let metrics = c.metrics().await.unwrap();
        let bad = metric(&metrics, "ormdb_server_bad_frames_total");
        assert!(bad >= 12, "bad frames counted: {bad}");
        // The 100 kB frame and the 2 MiB of garbage on both transports: NNG dropped each before
        // a worker saw it (and again for each resend REQ makes on a new connection).
        let dropped = metric(&metrics, "ormdb_server_oversized_dropped_total");
        assert!(
            dropped >= 4,
            "oversized requests counted: {dropped}\n{metrics}"
        );
    });
}

/// Speaks the SP handshake as a REQ peer on a raw stream, then announces a 32 MiB message and
/// sends only its first bytes: the server must close the connection on reading the length (a
/// server that accepted the announcement would allocate the buffer and wait for the rest).
fn announce_oversized<S: std::io::Read + std::io::Write>(mut s: S, ipc: bool) {
    s.write_all(&[0, b'S', b'P', 0, 0x00, 0x30, 0, 0]).unwrap();
    let mut theirs = [0u8; 8];
    std::io::Read::read_exact(&mut s, &mut theirs).unwrap();
    assert_eq!(&theirs[..4], &[0, b'S', b'P', 0], "an SP peer");
    let mut head = Vec::new();
    if ipc {
        head.push(1u8); // IPC's message type byte
    }
    head.extend_from_slice(&(32u64 << 20).to_be_bytes());
    head.extend_from_slice(&[0u8; 64]);
    s.write_all(&head).unwrap();
    let mut buf = [0u8; 64];
    match std::io::Read::read(&mut s, &mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes instead of closing"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open: {e}"),
    }
}

#[test]
fn an_oversized_announcement_is_dropped_before_its_body_arrives() {
    let server = Server::start(&["--max-request-bytes", "65536"]);
    let limit = Some(Duration::from_secs(5));
    let port = server.tcp.rsplit(':').next().unwrap();
    let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    tcp.set_read_timeout(limit).unwrap();
    announce_oversized(tcp, false);
    let path = server.ipc.strip_prefix("ipc://").unwrap();
    let ipc = std::os::unix::net::UnixStream::connect(path).unwrap();
    ipc.set_read_timeout(limit).unwrap();
    announce_oversized(ipc, true);
    // Others are served all along, and the server counted both drops.
    let rt = runtime();
    rt.block_on(async {
        for url in [&server.tcp, &server.ipc] {
            let c = Client::connect(url).await.unwrap();
            let r = c.sql("SELECT 1", Params::None).await.unwrap();
            assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
        }
        let c = Client::connect(&server.ipc).await.unwrap();
        let text = c.metrics().await.unwrap();
        assert_eq!(
            metric(&text, "ormdb_server_oversized_dropped_total"),
            2,
            "{text}"
        );
    });
}

#[test]
fn unknown_ids_get_clear_errors() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        for e in [
            c.sql_in(424242, "SELECT 1", Params::None)
                .await
                .unwrap_err(),
            c.commit(424242).await.unwrap_err(),
            c.rollback(424242).await.unwrap_err(),
        ] {
            assert_eq!(e.state, SqlState::InvalidTransactionState, "{e}");
            assert!(e.message.contains("unknown session id 424242"), "{e}");
        }
        let e = c
            .execute_prepared(0, 99_999, Params::None)
            .await
            .unwrap_err();
        assert_eq!(e.state, SqlState::InvalidParameter, "{e}");
        let e = c
            .request(Body::NextChunk { id: 5, offset: 0 })
            .await
            .err()
            .expect("unknown chunk");
        assert!(e.message.contains("unknown or expired reply chunk"), "{e}");
        c.sql("SELECT 1", Params::None).await.unwrap();
    });
}

#[test]
fn a_client_gone_mid_transaction_is_rolled_back_after_the_idle_timeout() {
    let server = Server::start(&["--session-idle-timeout", "1"]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.tcp).await.unwrap();
        c.sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            Params::None,
        )
        .await
        .unwrap();
        {
            let doomed = Client::connect(&server.tcp).await.unwrap();
            let s = doomed.begin().await.unwrap();
            doomed
                .sql_in(s, "INSERT INTO t (id, v) VALUES (1, 'lost')", Params::None)
                .await
                .unwrap();
            // The client goes away without commit or rollback.
        }
        let open = |m: &str| {
            m.lines()
                .find_map(|l| l.strip_prefix("ormdb_server_open_sessions "))
                .map(str::to_string)
        };
        assert_eq!(open(&c.metrics().await.unwrap()).as_deref(), Some("1"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = c.metrics().await.unwrap();
            if open(&m).as_deref() == Some("0") {
                assert!(m.contains("ormdb_server_sessions_expired_total 1"), "{m}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the session was never rolled back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nothing of it was committed, and the same key is free for others.
        let r = c.sql("SELECT count(*) FROM t", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(0)]]);
        c.sql("INSERT INTO t (id, v) VALUES (1, 'kept')", Params::None)
            .await
            .unwrap();

        // A session in active use is not expired by the same timeout.
        let s = c.begin().await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.sql_in(s, "SELECT count(*) FROM t", Params::None)
                .await
                .unwrap();
        }
        c.sql_in(s, "INSERT INTO t (id, v) VALUES (2, 'b')", Params::None)
            .await
            .unwrap();
        c.commit(s).await.unwrap();
        let r = c.sql("SELECT count(*) FROM t", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(2)]]);
    });
}

#[test]
fn sigterm_finishes_requests_in_flight_and_rolls_back_open_sessions() {
    let mut server = Server::start(&[]);
    let rt = runtime();
    let path = server.db_path.clone();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        c.sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", Params::None)
            .await
            .unwrap();
        let s = c.begin().await.unwrap();
        c.sql_in(s, "INSERT INTO t (id, v) VALUES (1, 'open')", Params::None)
            .await
            .unwrap();
        // A slow request in flight when the signal arrives: a recursive CTE counting far.
        let slow = {
            let c = c.clone();
            tokio::spawn(async move {
                c.sql(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT count(*) FROM n",
                    Params::None,
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pid = server.pid();
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let r = slow.await.unwrap().expect("the request in flight was answered");
        assert_eq!(r.rows, vec![vec![Value::Integer(300000)]]);
    });
    let out = server.stop_after_signal();
    assert!(out.contains("1 open sessions rolled back"), "{out}");
    let mut conn = ormdb::net::connect(path.to_str().unwrap()).unwrap();
    let r = conn
        .execute("SELECT count(*) FROM t", &Params::None)
        .unwrap();
    assert_eq!(r.rows, vec![vec![Value::Integer(0)]]);
}

/// A raw REQ peer on ipc:// that sends requests back to back and reads no reply until told to:
/// a frozen process, or a client that pipelines and stops reading.
struct FrozenReader(std::os::unix::net::UnixStream);

impl FrozenReader {
    fn connect(ipc_url: &str) -> FrozenReader {
        let mut s =
            std::os::unix::net::UnixStream::connect(ipc_url.strip_prefix("ipc://").unwrap())
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&[0, b'S', b'P', 0, 0x00, 0x30, 0, 0]).unwrap();
        let mut theirs = [0u8; 8];
        std::io::Read::read_exact(&mut s, &mut theirs).unwrap();
        assert_eq!(&theirs[..4], &[0, b'S', b'P', 0], "an SP peer");
        FrozenReader(s)
    }

    /// Sends `sql` as request `id` (IPC framing: a type byte, the length, REQ's request id).
    fn send(&mut self, id: u32, sql: &str) {
        let body = encode(&Body::Sql {
            session: 0,
            sql: sql.into(),
            params: Params::None,
        })
        .unwrap();
        let mut frame = vec![1u8];
        frame.extend_from_slice(&(4 + body.len() as u64).to_be_bytes());
        frame.extend_from_slice(&(id | 0x8000_0000).to_be_bytes());
        frame.extend_from_slice(&body);
        self.0.write_all(&frame).unwrap();
    }

    /// Sends the 2 MiB `SELECT` of [`slow_reader_tables`] as each of `ids`, then gives the
    /// server a moment to answer them (into a connection nobody reads).
    fn send_unread(&mut self, ids: std::ops::RangeInclusive<u32>) {
        for id in ids {
            self.send(id, "SELECT v FROM big ORDER BY id");
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Reads the next reply: (request id, body).
    fn read_reply(&mut self) -> (u32, Vec<u8>) {
        let mut head = [0u8; 9];
        std::io::Read::read_exact(&mut self.0, &mut head).unwrap();
        let len = u64::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        std::io::Read::read_exact(&mut self.0, &mut payload).unwrap();
        let id = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
        (id, payload.split_off(4))
    }
}

/// A server started with `args`, a client over ipc://, and the tables of
/// [`slow_reader_tables`].
fn slow_reader_server(args: &[&str]) -> (Server, tokio::runtime::Runtime, Client) {
    let server = Server::start(args);
    let rt = runtime();
    let c = rt.block_on(Client::connect(&server.ipc)).unwrap();
    rt.block_on(slow_reader_tables(&c));
    (server, rt, c)
}

/// Tables for the slow-reader tests: `big` (32 rows of 64 KiB: a 2 MiB reply, far more than a
/// UNIX socket buffers) and an empty `t`.
async fn slow_reader_tables(c: &Client) {
    c.sql(
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)",
        Params::None,
    )
    .await
    .unwrap();
    c.sql(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, w INTEGER)",
        Params::None,
    )
    .await
    .unwrap();
    for i in 0..32 {
        c.sql(
            "INSERT INTO big (id, v) VALUES (?, ?)",
            Params::Positional(vec![Value::Integer(i), Value::Text("x".repeat(64 << 10))]),
        )
        .await
        .unwrap();
    }
}

/// Writers and readers on both transports, each request allowed `timeout`: `n` autocommit
/// inserts and `n` counts per client, ids from `first`.
async fn others_are_served(server: &Server, first: i64, n: i64, timeout: Duration) {
    let opts = ormdb::net::ClientOptions {
        request_timeout: timeout,
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for (k, url) in [&server.tcp, &server.ipc].into_iter().enumerate() {
        let c = Client::connect_with(url, opts.clone()).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let id = first + k as i64 * n + i;
                c.sql(
                    "INSERT INTO t (id, w) VALUES (?, 1)",
                    Params::Positional(vec![Value::Integer(id)]),
                )
                .await
                .unwrap_or_else(|e| panic!("insert {id}: {e}"));
                c.sql("SELECT count(*) FROM t", Params::None)
                    .await
                    .unwrap_or_else(|e| panic!("count after insert {id}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn a_client_that_stops_reading_its_replies_holds_up_nobody_else() {
    // Few contexts and request threads, so that a server whose contexts or threads waited for
    // the frozen reader would stall everyone.
    let (mut server, rt, c) = slow_reader_server(&["--workers", "8", "--threads", "2"]);
    // Five 2 MiB replies, none read: the first fills the connection, the other four wait
    // behind it, each on a context of its own.
    let mut frozen = FrozenReader::connect(&server.ipc);
    frozen.send_unread(1..=5);
    let started = Instant::now();
    rt.block_on(others_are_served(&server, 0, 50, Duration::from_secs(10)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "others took {took:?}");
    // The frozen reader wakes up: every reply is still there, whole.
    let mut ids = Vec::new();
    for _ in 1..=5 {
        let (id, body) = frozen.read_reply();
        match decode(&body).unwrap().body {
            Body::SqlResult(r) => {
                assert_eq!(r.rows.len(), 32);
                assert!(r
                    .rows
                    .iter()
                    .all(|row| row[0] == Value::Text("x".repeat(64 << 10))));
            }
            other => panic!("reply {id}: {other:?}"),
        }
        ids.push(id);
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    rt.block_on(async {
        let r = c.sql("SELECT count(*) FROM t", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(100)]]);
    });
    // Frozen again, with replies waiting: SIGTERM gives them a moment, not the 30 s reply
    // timeout, and the server exits cleanly.
    frozen.send_unread(6..=8);
    let stopping = Instant::now();
    server.stop();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    drop(frozen);
}

#[test]
fn a_reply_never_read_is_dropped_after_the_reply_timeout_and_shutdown_does_not_wait_for_it() {
    let (mut server, rt, c) =
        slow_reader_server(&["--workers", "4", "--threads", "2", "--reply-timeout", "1"]);
    // More unread requests than the server has contexts: every context ends up holding a
    // reply for the frozen reader, until the reply timeout lets it go.
    let mut frozen = FrozenReader::connect(&server.ipc);
    frozen.send_unread(1..=8);
    rt.block_on(others_are_served(&server, 0, 20, Duration::from_secs(30)));
    rt.block_on(async {
        let r = c.sql("SELECT count(*) FROM t", Params::None).await.unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(40)]]);
        let text = c.metrics().await.unwrap();
        assert!(
            metric(&text, "ormdb_server_replies_dropped_total") >= 1,
            "{text}"
        );
    });
    // The reader is still frozen, its connection still full: SIGTERM stops the server anyway.
    server.stop();
    drop(frozen);
}
