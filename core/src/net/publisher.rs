//! The change publisher: follows the change log from the moment the server starts and publishes
//! every commit as one event per entity on the PUB socket, topic = entity. PUB never waits for
//! a subscriber (NNG drops messages for one whose queue is full), so a slow subscriber cannot
//! hold commits back; it notices the hole through `prev` and replays it from the change log.
//!
//! Batching: every commit that became visible while the last batch was being published goes out
//! together, and consecutive events of the same entity share one PUB message (the topic, then
//! the events' frames back to back, see [`frames`]). Under load that turns thousands of NNG
//! sends, queue entries and subscriber wake-ups per second into a few hundred, without waiting
//! for anything: a lone commit is still published the moment it is visible. Events keep their
//! own token and `prev`, and messages go out in commit order, so exactly-once delivery, commit
//! order and gap detection work as for one event per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::handler::{encode_reply, Shared};
use super::rawnng::{Msg, Socket};
use crate::changes::{ChangeSet, SubscriptionFilter};
use crate::error::{Error, Result, SqlState};
use crate::ir::protocol::{change_topic, Body, ChangeEvent, FRAME_HEADER};

/// Change sets taken from the log per batch: bounds the publisher's memory when it wakes up far
/// behind.
const MAX_BATCH_SETS: usize = 1024;
/// A PUB message is closed once it holds this many bytes of frames (a larger single event still
/// goes out alone): subscribers read a message whole, so this bounds their buffers.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Messages NNG queues per subscriber before it drops that subscriber's messages (NNG's default
/// is 16). At 10k commits/s a publisher sends 2-7k messages/s (fewer, larger batches under
/// Full durability), so this covers a subscriber process that is not scheduled for 150-500 ms
/// (seen on a loaded 2-core machine; 256 slots, ~40-100 ms, let such stalls cost a replay). Each
/// slot is one pointer: 8 KiB per subscriber, allocated when it connects.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// Splits a change set into per-entity events, in the order entities first appear.
pub fn events(cs: &ChangeSet, prev_of: &mut impl FnMut(&str) -> u64) -> Vec<ChangeEvent> {
    let mut order: Vec<String> = Vec::new();
    let mut by: HashMap<String, ChangeEvent> = HashMap::new();
    let mut slot = |name: &str, order: &mut Vec<String>| -> String {
        let key = name.to_ascii_lowercase();
        if !by.contains_key(&key) {
            order.push(key.clone());
            by.insert(
                key.clone(),
                ChangeEvent {
                    token: cs.token,
                    prev: 0,
                    entity: name.to_string(),
                    changes: Vec::new(),
                    relations: Vec::new(),
                },
            );
        }
        key
    };
    let mut keys_changes = Vec::new();
    for e in &cs.entities {
        keys_changes.push((slot(&e.entity, &mut order), e.clone()));
    }
    let mut keys_relations = Vec::new();
    for r in &cs.relations {
        keys_relations.push((slot(&r.child_entity, &mut order), r.clone()));
    }
    for (k, e) in keys_changes {
        if let Some(ev) = by.get_mut(&k) {
            ev.changes.push(e);
        }
    }
    for (k, r) in keys_relations {
        if let Some(ev) = by.get_mut(&k) {
            ev.relations.push(r);
        }
    }
    order
        .into_iter()
        .filter_map(|k| {
            let mut ev = by.remove(&k)?;
            ev.prev = prev_of(&k);
            Some(ev)
        })
        .collect()
}

/// Splits the payload of a change message (what follows the topic's NUL) into its frames, each
/// one complete framed [`crate::ir::protocol::Message`] for [`crate::ir::protocol::access`].
pub fn frames(mut payload: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        let bad = |why: &str| {
            Error::new(
                SqlState::ProtocolViolation,
                format!("invalid change message: {why}"),
            )
        };
        if payload.len() < FRAME_HEADER {
            return Err(bad("a frame is shorter than its header"));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&payload[..4]);
        let total = (u32::from_le_bytes(len) as usize)
            .checked_add(FRAME_HEADER)
            .ok_or_else(|| bad("frame length overflows"))?;
        if payload.len() < total {
            return Err(bad("a frame is truncated"));
        }
        let (frame, rest) = payload.split_at(total);
        out.push(frame);
        payload = rest;
    }
    Ok(out)
}

/// Packs events, in order, into PUB messages: a run of events of one entity shares a message
/// (up to [`MAX_MESSAGE_BYTES`]); an event of another entity starts the next one, so the
/// messages keep commit order.
#[derive(Default)]
pub struct Batcher {
    current: Option<(String, Vec<u8>)>,
    done: Vec<Vec<u8>>,
    events: u64,
}

impl Batcher {
    pub fn push(&mut self, ev: ChangeEvent) {
        let key = ev.entity.to_ascii_lowercase();
        let frame = encode_reply(Body::Change(ev));
        self.events += 1;
        if let Some((k, buf)) = &mut self.current {
            if *k == key && buf.len() + frame.len() <= MAX_MESSAGE_BYTES {
                buf.extend_from_slice(&frame);
                return;
            }
        }
        self.close();
        let mut buf = change_topic(&key);
        buf.extend_from_slice(&frame);
        self.current = Some((key, buf));
    }

    fn close(&mut self) {
        if let Some((_, buf)) = self.current.take() {
            self.done.push(buf);
        }
    }

    /// The messages (topic + frames) and the number of events in them.
    pub fn finish(mut self) -> (Vec<Vec<u8>>, u64) {
        self.close();
        (self.done, self.events)
    }
}

/// Runs until `stop` is set, then publishes whatever was committed before returning.
pub fn run(shared: Arc<Shared>, socket: Socket, stop: Arc<AtomicBool>) {
    let db = shared.db.clone();
    'outer: loop {
        let mut sub = match db.subscribe(None, SubscriptionFilter::default()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("change publisher cannot subscribe: {e}");
                return;
            }
        };
        // Entities not seen since the start: nothing touched them between `start` and now as far
        // as this publisher knows, so `start` is a safe lower bound for their previous token.
        let start = sub.position();
        let mut last: HashMap<String, u64> = HashMap::new();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let next = if stopping {
                sub.try_next()
            } else {
                sub.next_timeout(Duration::from_millis(100))
            };
            let first = match next {
                Ok(Some(cs)) => cs,
                Ok(None) if stopping => return,
                Ok(None) => continue,
                Err(e) if e.state == SqlState::SnapshotTooOld => {
                    tracing::warn!(
                        "change publisher fell behind the change log ({e}); restarting from now"
                    );
                    continue 'outer;
                }
                Err(e) if e.state == SqlState::ConnectionDoesNotExist => return,
                Err(e) => {
                    tracing::error!("change publisher: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // Whatever else is visible already joins this batch; an error here is met again
            // (and handled) by the wait above.
            let mut sets = vec![first];
            while sets.len() < MAX_BATCH_SETS {
                match sub.try_next() {
                    Ok(Some(cs)) => sets.push(cs),
                    _ => break,
                }
            }
            let mut batch = Batcher::default();
            for cs in &sets {
                let evs = events(cs, &mut |k| last.get(k).copied().unwrap_or(start));
                for ev in evs {
                    last.insert(ev.entity.to_ascii_lowercase(), cs.token);
                    batch.push(ev);
                }
            }
            let (messages, n) = batch.finish();
            for m in messages {
                match Msg::from_slice(&m) {
                    Ok(msg) => {
                        if let Err(e) = socket.send(msg) {
                            tracing::warn!("publishing a change: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("allocating a change message: {e}"),
                }
            }
            shared
                .metrics
                .changes_published
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::{ChangeKind, EntityChange};
    use crate::ir::protocol::{access, ArchivedBody};
    use crate::Value;

    fn commit(token: u64, rows: &[(&str, i64)], pad: usize) -> ChangeSet {
        ChangeSet {
            token,
            schema_version: 1,
            schema_changed: false,
            entities: rows
                .iter()
                .map(|(entity, row_id)| EntityChange {
                    entity: entity.to_string(),
                    table_id: 1,
                    row_id: *row_id,
                    kind: ChangeKind::Insert,
                    version: token,
                    changed: vec![0],
                    values: vec![Value::Text("x".repeat(pad))],
                })
                .collect(),
            relations: Vec::new(),
        }
    }

    /// Messages as (topic, events decoded from its frames).
    type Published = Vec<(Vec<u8>, Vec<ChangeEvent>)>;

    /// Runs commits through `events` and the batcher as the publisher does.
    fn publish(sets: &[ChangeSet]) -> (Published, u64) {
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut batch = Batcher::default();
        for cs in sets {
            for ev in events(cs, &mut |k| last.get(k).copied().unwrap_or(0)) {
                last.insert(ev.entity.to_ascii_lowercase(), cs.token);
                batch.push(ev);
            }
        }
        let (messages, n) = batch.finish();
        let decoded = messages
            .iter()
            .map(|m| {
                let nul = m.iter().position(|b| *b == 0).expect("topic");
                let evs = frames(&m[nul + 1..])
                    .expect("frames")
                    .into_iter()
                    .map(|f| match &access(f).expect("frame").body {
                        ArchivedBody::Change(ev) => {
                            rkyv::deserialize::<ChangeEvent, rkyv::rancor::Error>(ev)
                                .expect("event")
                        }
                        _ => panic!("not a change"),
                    })
                    .collect();
                (m[..=nul].to_vec(), evs)
            })
            .collect();
        (decoded, n)
    }

    #[test]
    fn a_run_of_one_entity_shares_a_message_and_order_and_prev_chains_survive() {
        let sets = [
            commit(10, &[("Items", 1)], 1),
            commit(11, &[("items", 2)], 1),
            commit(12, &[("other", 1), ("items", 3)], 1),
            commit(13, &[("items", 4)], 1),
            commit(14, &[("items", 5)], 1),
        ];
        let (msgs, n) = publish(&sets);
        assert_eq!(n, 6);
        let shape: Vec<(Vec<u8>, Vec<u64>)> = msgs
            .iter()
            .map(|(t, evs)| (t.clone(), evs.iter().map(|e| e.token).collect()))
            .collect();
        // Commit 12 touched `other` first: its event splits the `items` run, so the messages
        // are still in commit order.
        assert_eq!(
            shape,
            vec![
                (change_topic("items"), vec![10, 11]),
                (change_topic("other"), vec![12]),
                (change_topic("items"), vec![12, 13, 14]),
            ]
        );
        let items: Vec<(u64, u64)> = msgs
            .iter()
            .flat_map(|(_, evs)| evs.iter())
            .filter(|e| e.entity.eq_ignore_ascii_case("items"))
            .map(|e| (e.prev, e.token))
            .collect();
        // Each event names the previous token of its entity, across message boundaries.
        assert_eq!(items, vec![(0, 10), (10, 11), (11, 12), (12, 13), (13, 14)]);
        let rows: Vec<i64> = msgs
            .iter()
            .flat_map(|(_, evs)| evs.iter())
            .flat_map(|e| e.changes.iter().map(|c| c.row_id))
            .collect();
        assert_eq!(rows, vec![1, 2, 1, 3, 4, 5]);
    }

    #[test]
    fn a_message_is_closed_at_the_size_limit_and_a_large_event_goes_alone() {
        // Each event is a little over a quarter of the limit: three fit, the fourth opens a new
        // message; an event above the limit is sent on its own.
        let quarter = MAX_MESSAGE_BYTES / 4;
        let mut sets: Vec<ChangeSet> = (1..=5)
            .map(|t| commit(t, &[("t", t as i64)], quarter + 100))
            .collect();
        sets.push(commit(6, &[("t", 6)], MAX_MESSAGE_BYTES + 10));
        sets.push(commit(7, &[("t", 7)], 10));
        let (msgs, n) = publish(&sets);
        assert_eq!(n, 7);
        let tokens: Vec<Vec<u64>> = msgs
            .iter()
            .map(|(_, evs)| evs.iter().map(|e| e.token).collect())
            .collect();
        assert_eq!(tokens, vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7]]);
    }

    #[test]
    fn damaged_change_messages_are_protocol_errors() {
        let (msgs, _) = publish(&[commit(1, &[("t", 1)], 1), commit(2, &[("t", 2)], 1)]);
        assert_eq!(msgs.len(), 1);
        let mut bytes = Vec::new();
        for (_, evs) in &msgs {
            for ev in evs {
                bytes.extend_from_slice(&encode_reply(Body::Change(ev.clone())));
            }
        }
        assert_eq!(frames(&bytes).expect("whole").len(), 2);
        for cut in [1, FRAME_HEADER - 1, bytes.len() - 1] {
            let err = frames(&bytes[..cut]).expect_err("truncated");
            assert_eq!(err.state, SqlState::ProtocolViolation, "{err}");
        }
        // A length header that claims more than there is.
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            frames(&lying).expect_err("overlong").state,
            SqlState::ProtocolViolation
        );
        assert!(frames(&[]).expect("empty").is_empty());
    }
}
