//! Following a change stream from a client: live events from the SUB socket, checked against
//! the last token seen per entity. An event whose `prev` is newer than that token reveals a gap
//! (NNG dropped messages for a slow subscriber, or a reconnect): the stream reports
//! [`StreamEvent::Lagged`] and replays the hole from the server's change log before going on, so
//! every change is delivered exactly once and in commit order per entity. When the socket stays
//! quiet the stream also asks the log for anything newer, which recovers a dropped tail.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::Client;
use super::publisher::{events, frames};
use super::rawnng::{self, Protocol, Socket};
use crate::changes::ChangeToken;
use crate::error::{Error, Result, SqlState};
use crate::ir::protocol::{access, change_topic, ArchivedBody, ChangeEvent, CHANGE_TOPIC_PREFIX};

const REPLAY_BATCH: u32 = 1000;

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Live messages buffered for a reader that is busy; beyond this they are dropped and
    /// later replayed from the change log.
    pub live_queue: usize,
    /// How long the stream waits for a live event before asking the change log directly.
    pub idle_resync: Duration,
    /// Messages NNG holds on the SUB socket while the receiving thread is busy or not
    /// scheduled (1 to 8192; NNG's default is 128); beyond this it drops the oldest, and the
    /// stream sees a gap and replays it from the change log.
    pub socket_queue: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            live_queue: 8192,
            idle_resync: Duration::from_millis(500),
            socket_queue: 8192,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Change(ChangeEvent),
    /// Changes of `entity` after token `after` up to `upto` were not received live; they follow,
    /// replayed from the change log.
    Lagged {
        entity: String,
        after: ChangeToken,
        upto: ChangeToken,
    },
}

/// What a stream has seen so far, and why it replayed: which of the three ways of noticing a
/// hole it was tells a reader that could not keep up (`overflows`) from messages lost before
/// they reached this process (`gaps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// PUB messages received.
    pub messages: u64,
    /// Change events handed out (live or replayed).
    pub events: u64,
    /// [`StreamEvent::Lagged`] notices handed out.
    pub lag_notices: u64,
    /// Times the stream's own queue was full (the reader was slower than the socket), so
    /// messages were dropped here.
    pub overflows: u64,
    /// Events whose `prev` revealed that earlier messages never arrived (dropped by NNG on
    /// the publisher's or the subscriber's side, or lost in a reconnect).
    pub gaps: u64,
    /// Replays after the socket stayed quiet for `idle_resync`.
    pub idle_resyncs: u64,
}

pub struct ChangeStream {
    client: Client,
    /// Lowercase entity names; empty: all.
    entities: Vec<String>,
    /// Last token delivered (or known to have nothing) per entity.
    last: HashMap<String, ChangeToken>,
    /// Last token for entities not in `last`.
    base: ChangeToken,
    pending: VecDeque<StreamEvent>,
    live: mpsc::Receiver<Vec<u8>>,
    /// Set by the receiving thread when it had to drop a message because the queue was full.
    dropped: Arc<AtomicBool>,
    /// Closed on drop, which ends the receiving thread.
    socket: Arc<Socket>,
    idle_resync: Duration,
    stats: StreamStats,
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.socket.close();
    }
}

impl ChangeStream {
    /// Follows changes of `entities` (empty: all) committed after `from` (None: from now on).
    pub async fn open(
        client: &Client,
        entities: &[&str],
        from: Option<ChangeToken>,
    ) -> Result<ChangeStream> {
        ChangeStream::open_with(client, entities, from, StreamOptions::default()).await
    }

    pub async fn open_with(
        client: &Client,
        entities: &[&str],
        from: Option<ChangeToken>,
        opts: StreamOptions,
    ) -> Result<ChangeStream> {
        let url = client.change_url()?;
        let entities: Vec<String> = entities.iter().map(|e| e.to_ascii_lowercase()).collect();
        let topics: Vec<Vec<u8>> = if entities.is_empty() {
            vec![CHANGE_TOPIC_PREFIX.to_vec()]
        } else {
            entities.iter().map(|e| change_topic(e)).collect()
        };
        let (tx, rx) = mpsc::channel(opts.live_queue.max(1));
        let queue = opts.socket_queue;
        let socket = tokio::task::spawn_blocking(move || open_sub(&url, &topics, queue))
            .await
            .map_err(|e| Error::internal(format!("the change subscriber stopped: {e}")))??;
        let dropped = Arc::new(AtomicBool::new(false));
        {
            let (socket, dropped) = (socket.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("ormdb-sub".into())
                .spawn(move || receive(&socket, &tx, &dropped))
                .map_err(|e| super::io_error("starting the change subscriber", e))?;
        }
        // NNG attaches the new pipe to the publisher a moment after the dial returns; changes
        // published in that moment are recovered by the catch-up below or by gap detection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let base = match from {
            Some(t) => t,
            None => client.changes(u64::MAX, &[], 1).await?.1,
        };
        let mut s = ChangeStream {
            client: client.clone(),
            entities,
            last: HashMap::new(),
            base,
            pending: VecDeque::new(),
            live: rx,
            dropped,
            socket,
            idle_resync: opts.idle_resync,
            stats: StreamStats::default(),
        };
        s.replay_all(false).await?;
        Ok(s)
    }

    /// What the stream has seen so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    fn last_of(&self, entity: &str) -> ChangeToken {
        self.last.get(entity).copied().unwrap_or(self.base)
    }

    fn wants(&self, entity: &str) -> bool {
        self.entities.is_empty() || self.entities.iter().any(|e| e == entity)
    }

    /// Where to resume after this stream is dropped: no change it has not handed out is older,
    /// so resuming from it misses nothing. Events already received but not yet handed out by
    /// [`ChangeStream::next`] count as not delivered (a batched message brings several at once).
    pub fn position(&self) -> ChangeToken {
        let seen: Vec<ChangeToken> = if self.entities.is_empty() {
            self.last.values().copied().chain([self.base]).collect()
        } else {
            self.entities.iter().map(|e| self.last_of(e)).collect()
        };
        let undelivered = self.pending.iter().map(|e| match e {
            StreamEvent::Change(ev) => ev.prev,
            StreamEvent::Lagged { after, .. } => *after,
        });
        seen.into_iter()
            .chain(undelivered)
            .min()
            .unwrap_or(self.base)
    }

    /// Waits for the next event. Errors: 72000 when the change log no longer holds a change the
    /// stream missed (the subscriber fell too far behind), or a connection error.
    pub async fn next(&mut self) -> Result<StreamEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                match &ev {
                    StreamEvent::Change(_) => self.stats.events += 1,
                    StreamEvent::Lagged { .. } => self.stats.lag_notices += 1,
                }
                return Ok(ev);
            }
            if self.dropped.swap(false, Ordering::AcqRel) {
                // Messages were dropped here, so the change log has what we missed.
                self.stats.overflows += 1;
                self.replay_all(true).await?;
                continue;
            }
            match tokio::time::timeout(self.idle_resync, self.live.recv()).await {
                Ok(Some(bytes)) => {
                    self.stats.messages += 1;
                    self.on_live(&bytes).await?
                }
                Ok(None) => {
                    return Err(Error::new(
                        SqlState::ConnectionDoesNotExist,
                        "the change stream's connection closed",
                    ))
                }
                Err(_) => {
                    self.stats.idle_resyncs += 1;
                    self.replay_all(true).await?
                }
            }
        }
    }

    /// Like [`ChangeStream::next`] with a time limit; `Ok(None)` when nothing arrived.
    pub async fn next_timeout(&mut self, t: Duration) -> Result<Option<StreamEvent>> {
        match tokio::time::timeout(t, self.next()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// One PUB message: the topic, then one or more framed events of one entity in commit order.
    async fn on_live(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(nul) = bytes.iter().position(|b| *b == 0) else {
            return Ok(()); // not a change message
        };
        for frame in frames(&bytes[nul + 1..])? {
            let ev: ChangeEvent = match access(frame)?.body {
                ArchivedBody::Change(ref ev) => {
                    rkyv::deserialize::<ChangeEvent, rkyv::rancor::Error>(ev).map_err(|e| {
                        Error::new(
                            SqlState::ProtocolViolation,
                            format!("invalid change event: {e}"),
                        )
                    })?
                }
                _ => continue,
            };
            self.on_event(ev).await?;
        }
        Ok(())
    }

    async fn on_event(&mut self, ev: ChangeEvent) -> Result<()> {
        let key = ev.entity.to_ascii_lowercase();
        if !self.wants(&key) {
            return Ok(());
        }
        let last = self.last_of(&key);
        if ev.token <= last {
            return Ok(()); // already delivered by a replay
        }
        if ev.prev > last {
            self.stats.gaps += 1;
            self.pending.push_back(StreamEvent::Lagged {
                entity: ev.entity.clone(),
                after: last,
                upto: ev.prev,
            });
            self.replay(std::slice::from_ref(&key), last, false).await?;
        }
        if ev.token > self.last_of(&key) {
            self.last.insert(key, ev.token);
            self.pending.push_back(StreamEvent::Change(ev));
        }
        Ok(())
    }

    /// `lagged`: announce what the replay finds as missed (it was committed but never arrived).
    async fn replay_all(&mut self, lagged: bool) -> Result<()> {
        let from = self.position();
        let entities = self.entities.clone();
        self.replay(&entities, from, lagged).await
    }

    /// Delivers from the change log every change of `entities` (empty: all) after `from` not yet
    /// delivered, then marks those entities as complete up to where the log was read.
    async fn replay(
        &mut self,
        entities: &[String],
        mut from: ChangeToken,
        lagged: bool,
    ) -> Result<()> {
        let mut announced: Vec<String> = Vec::new();
        loop {
            let (sets, position) = self.client.changes(from, entities, REPLAY_BATCH).await?;
            let n = sets.len();
            for cs in &sets {
                for mut ev in events(cs, &mut |_| 0) {
                    let key = ev.entity.to_ascii_lowercase();
                    if !self.wants(&key) || ev.token <= self.last_of(&key) {
                        continue;
                    }
                    ev.prev = self.last_of(&key);
                    if lagged && !announced.contains(&key) {
                        announced.push(key.clone());
                        self.pending.push_back(StreamEvent::Lagged {
                            entity: ev.entity.clone(),
                            after: ev.prev,
                            upto: position,
                        });
                    }
                    self.last.insert(key, ev.token);
                    self.pending.push_back(StreamEvent::Change(ev));
                }
            }
            from = position;
            if n < REPLAY_BATCH as usize {
                break;
            }
        }
        if entities.is_empty() {
            self.base = self.base.max(from);
            for v in self.last.values_mut() {
                *v = (*v).max(from);
            }
        } else {
            for e in entities {
                let v = self.last_of(e).max(from);
                self.last.insert(e.clone(), v);
            }
        }
        Ok(())
    }
}

/// Opens a SUB socket with a `queue`-message receive buffer, subscribed to `topics`, and dials
/// `url` (an error when nothing listens there now; NNG redials by itself after a drop).
fn open_sub(url: &str, topics: &[Vec<u8>], queue: usize) -> Result<Arc<Socket>> {
    let c_url = CString::new(url)
        .map_err(|_| Error::new(SqlState::InvalidParameter, "a URL cannot contain NUL"))?;
    let socket = Socket::open(Protocol::Sub).map_err(|e| rawnng::io("opening a SUB socket", e))?;
    socket
        .set_recv_buffer(queue)
        .and_then(|_| socket.set_recv_timeout(RECEIVE_POLL))
        .map_err(|e| rawnng::io("configuring the SUB socket", e))?;
    for t in topics {
        socket
            .subscribe(t)
            .map_err(|e| rawnng::io("subscribing to a topic", e))?;
    }
    socket
        .dial(&c_url)
        .map_err(|e| rawnng::io(&format!("subscribing to {url}"), e))?;
    Ok(Arc::new(socket))
}

/// How often an idle receiving thread checks that its stream still exists.
const RECEIVE_POLL: Duration = Duration::from_secs(1);

/// The receiving thread: blocked in NNG's receive, so a message wakes it directly (no async
/// hand-off), and it hands the bytes to the stream's queue. Ends when the stream closes the
/// socket or goes away.
fn receive(socket: &Socket, tx: &mpsc::Sender<Vec<u8>>, dropped: &AtomicBool) {
    loop {
        match socket.recv() {
            Ok(msg) => match tx.try_send(msg.as_slice().to_vec()) {
                Ok(()) => {}
                // A full queue means the reader is slow: drop and let it replay from the log.
                Err(mpsc::error::TrySendError::Full(_)) => dropped.store(true, Ordering::Release),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Err(e) if e.is_closed() => return,
            Err(e) if e.is_timeout() => {
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("change stream receive: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
