//! [`RemoteSubscription`]: a change stream on a server with the shape of the in-process
//! [`crate::Subscription`]: whole change sets (every entity of a commit, with its schema
//! version) in commit order, read from the server's change log with `Changes`, after a start
//! token. The PUB/SUB stream ([`ChangeStream`]) is only a wake-up that makes delivery prompt;
//! the log is also read at every wait, so a live message lost in a reconnect delays a change by
//! at most one wait and never loses it. Blocking, for callers without an async runtime (the
//! Python binding).

use std::collections::VecDeque;
use std::time::Duration;

use super::client::{BlockingClient, Client, ClientOptions};
use super::stream::{ChangeStream, StreamOptions};
use crate::catalog::SchemaBundle;
use crate::changes::{ChangeSet, ChangeToken};
use crate::error::{Error, Result};

/// Change sets read from the log per request.
const REPLAY_BATCH: u32 = 1000;

pub struct RemoteSubscription {
    /// Declared before `rt` so that it is dropped while its runtime still runs.
    wake: ChangeStream,
    log: BlockingClient,
    entities: Vec<String>,
    /// Every change up to here has been read from the log (delivered, buffered or filtered).
    scanned: ChangeToken,
    /// The token of the last change set delivered.
    position: ChangeToken,
    buffered: VecDeque<ChangeSet>,
    /// The catalog as of the newest schema version delivered (names the changed fields).
    schema: SchemaBundle,
    rt: tokio::runtime::Runtime,
}

impl RemoteSubscription {
    /// Follows changes of `entities` (empty: all) committed after `after` (None: from now on)
    /// on the server at `url`.
    pub fn open(
        url: &str,
        opts: ClientOptions,
        entities: Vec<String>,
        after: Option<ChangeToken>,
    ) -> Result<RemoteSubscription> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| super::io_error("starting the subscription's runtime", e))?;
        let log = BlockingClient::connect_with(url, opts.clone())?;
        let start = match after {
            Some(t) => t,
            None => log.changes(u64::MAX, &[], 1)?.1,
        };
        let names: Vec<&str> = entities.iter().map(String::as_str).collect();
        let wake = rt.block_on(async {
            let client = Client::connect_with(url, opts).await?;
            // Started at the newest commit (the log is replayed from `start` here, not by the
            // stream), and with no idle resync of its own: `next_timeout` reads the log anyway.
            let so = StreamOptions {
                idle_resync: Duration::from_secs(3600),
                ..StreamOptions::default()
            };
            ChangeStream::open_with(&client, &names, None, so).await
        })?;
        let schema = log
            .schema(0, u64::MAX)?
            .1
            .ok_or_else(|| Error::internal("the server left out the catalog"))?;
        Ok(RemoteSubscription {
            wake,
            log,
            entities,
            scanned: start,
            position: start,
            buffered: VecDeque::new(),
            schema,
            rt,
        })
    }

    /// The token of the last change set delivered (the start token before the first):
    /// opening with `after` set to it resumes without gaps or repeats.
    pub fn position(&self) -> ChangeToken {
        self.position
    }

    /// The catalog at the newest schema version delivered so far (at least the one when the
    /// subscription opened): it names the fields of the change sets' values.
    pub fn schema(&self) -> &SchemaBundle {
        &self.schema
    }

    /// Reads the log after `scanned`; whether it found a change set.
    fn read_log(&mut self) -> Result<bool> {
        let (sets, upto) = self
            .log
            .changes(self.scanned, &self.entities, REPLAY_BATCH)?;
        self.scanned = upto.max(self.scanned);
        let found = !sets.is_empty();
        self.buffered.extend(sets);
        Ok(found)
    }

    /// The next change set, waiting up to `wait` for one; `Ok(None)` when none came.
    pub fn next_timeout(&mut self, wait: Duration) -> Result<Option<ChangeSet>> {
        if self.buffered.is_empty() && !self.read_log()? {
            // A live event means something was committed; the event itself is not used.
            self.rt.block_on(self.wake.next_timeout(wait))?;
            self.read_log()?;
        }
        let Some(cs) = self.buffered.pop_front() else {
            return Ok(None);
        };
        self.position = cs.token;
        if cs.schema_version > self.schema.version {
            if let (_, Some(b)) = self.log.schema(0, self.schema.version)? {
                self.schema = b;
            }
        }
        Ok(Some(cs))
    }
}
