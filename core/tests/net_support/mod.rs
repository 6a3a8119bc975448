//! Starts a real `ormdb serve` process for the server tests: free loopback ports, IPC sockets in
//! a temporary directory, readiness from the server's "listening" line, SIGTERM to stop it (and
//! a check that it exits cleanly) or SIGKILL to kill it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub db_path: PathBuf,
    pub tcp: String,
    pub ipc: String,
    pub tcp_changes: String,
    pub ipc_changes: String,
    pub metrics_addr: String,
    pub stdout: mpsc::Receiver<String>,
}

/// A TCP port nobody listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("db");
        Server::start_at(dir, db_path, extra)
    }

    /// Starts a server on an existing directory (a restart keeps the endpoints' shape, not the ports).
    pub fn start_at(dir: tempfile::TempDir, db_path: PathBuf, extra: &[&str]) -> Server {
        let tcp = format!("tcp://127.0.0.1:{}", free_port());
        let tcp_changes = format!("tcp://127.0.0.1:{}", free_port());
        let ipc = format!("ipc://{}", dir.path().join("req.sock").display());
        let ipc_changes = format!("ipc://{}", dir.path().join("changes.sock").display());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ormdb"));
        cmd.arg("serve")
            .arg(&db_path)
            .args(["--listen", &tcp, "--listen", &ipc])
            .args([
                "--changes-listen",
                &tcp_changes,
                "--changes-listen",
                &ipc_changes,
            ])
            .args(["--metrics", &metrics_addr])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start ormdb serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("ormdb serve exited early: {status}");
                    }
                    assert!(Instant::now() < deadline, "ormdb serve did not start");
                }
            }
        }
        Server {
            child: Some(child),
            dir,
            db_path,
            tcp,
            ipc,
            tcp_changes,
            ipc_changes,
            metrics_addr,
            stdout: rx,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM, then waits for a clean exit; returns the rest of its stdout.
    pub fn stop(&mut self) -> String {
        let pid = self.pid();
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.stop_after_signal()
    }

    /// Waits for a clean exit after a signal was sent; returns the rest of its stdout.
    pub fn stop_after_signal(&mut self) -> String {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "ormdb serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "ormdb serve exited with {status}");
        let mut rest = String::new();
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(200)) {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The value of a counter or gauge in the server's Prometheus text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}
