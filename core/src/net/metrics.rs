//! Server figures (requests, latency histogram, sessions, published changes) and the
//! `--metrics` HTTP endpoint that serves them with the engine's metrics as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

#[derive(Default)]
pub struct ServerMetrics {
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub bad_frames: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_expired: AtomicU64,
    pub changes_published: AtomicU64,
    pub change_replays: AtomicU64,
    pub in_flight: AtomicU64,
    pub replies_waiting: AtomicU64,
    pub request_threads: AtomicU64,
    pub replies_dropped: AtomicU64,
}

/// Bytes handed out by the allocator and not yet freed. Unlike RSS it does not move when the
/// allocator returns or keeps free pages, so it shows what a session or a subscriber costs.
pub fn heap_in_use() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics (all arenas).
        let mi = unsafe { libc::mallinfo2() };
        (mi.uordblks as u64).saturating_add(mi.hblkhd as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

impl ServerMetrics {
    pub fn observe_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            if us <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Prometheus text of the server figures; `open_sessions` is read from the session table.
    pub fn render(&self, open_sessions: usize) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "ormdb_server_requests_total",
            "Requests answered.",
            ld(&self.requests),
        );
        counter(
            &mut out,
            "ormdb_server_request_errors_total",
            "Requests answered with an error.",
            ld(&self.request_errors),
        );
        counter(
            &mut out,
            "ormdb_server_bad_frames_total",
            "Requests rejected as garbage, truncated, oversized or of an unsupported version.",
            ld(&self.bad_frames),
        );
        counter(
            &mut out,
            "ormdb_server_oversized_dropped_total",
            "Requests whose header announced more than --max-request-bytes: NNG closed the connection before reading them, so the sender got no reply.",
            super::rawnng::oversized_dropped(),
        );
        gauge(
            &mut out,
            "ormdb_server_requests_in_flight",
            "Requests being executed.",
            ld(&self.in_flight),
        );
        gauge(
            &mut out,
            "ormdb_server_request_threads",
            "Request threads running (--threads, more while long requests keep every one busy).",
            ld(&self.request_threads),
        );
        gauge(
            &mut out,
            "ormdb_server_replies_waiting",
            "Replies waiting for a connection still sending an earlier reply its requester has not read.",
            ld(&self.replies_waiting),
        );
        counter(
            &mut out,
            "ormdb_server_replies_dropped_total",
            "Replies dropped after waiting --reply-timeout (at shutdown: 1 s) for a requester that read nothing.",
            ld(&self.replies_dropped),
        );
        gauge(
            &mut out,
            "ormdb_server_open_sessions",
            "Sessions holding a transaction across requests.",
            open_sessions as u64,
        );
        counter(
            &mut out,
            "ormdb_server_sessions_opened_total",
            "Sessions opened by Begin.",
            ld(&self.sessions_opened),
        );
        counter(
            &mut out,
            "ormdb_server_sessions_expired_total",
            "Sessions rolled back after their idle timeout.",
            ld(&self.sessions_expired),
        );
        counter(
            &mut out,
            "ormdb_server_change_events_published_total",
            "Entity change events published on the change stream.",
            ld(&self.changes_published),
        );
        gauge(
            &mut out,
            "ormdb_server_heap_bytes",
            "Heap bytes the server process holds (glibc's mallinfo2: in use, not what the allocator keeps free; 0 where unavailable).",
            heap_in_use(),
        );
        counter(
            &mut out,
            "ormdb_server_change_replays_total",
            "Change log replays requested by subscribers (resume or gap recovery).",
            ld(&self.change_replays),
        );
        let name = "ormdb_server_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a request to sending its reply (a commit under durability full included its sync).\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += ld(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let count = ld(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", ld(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

/// Serves `GET /metrics` (any path) with the text `render` returns. A minimal HTTP/1.1 reply
/// per connection is all a Prometheus scraper needs.
pub async fn serve_http(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Reading the request head only; the body of a GET is empty.
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET ") {
                ("200 OK", render())
            } else {
                ("405 Method Not Allowed", "only GET is served\n".to_string())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
