//! The change publisher: follows the change log from the moment the server starts and publishes
//! every commit as one event per entity on the PUB socket, topic = entity. PUB never waits for
//! a subscriber (NNG drops messages for one whose queue is full), so a slow subscriber cannot
//! hold commits back; it notices the hole through `prev` and replays it from the change log.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anng::protocols::pubsub0::Pub0;
use anng::{Message, Socket};

use super::handler::{encode_reply, Shared};
use crate::changes::{ChangeSet, SubscriptionFilter};
use crate::error::SqlState;
use crate::ir::protocol::{change_topic, Body, ChangeEvent};

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

/// Runs until `stop` is set, then publishes whatever was committed before returning.
pub fn run(
    shared: Arc<Shared>,
    mut socket: Socket<Pub0>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
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
            let cs = match next {
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
            let token = cs.token;
            let mut prev_of = |k: &str| last.get(k).copied().unwrap_or(start);
            let evs = events(&cs, &mut prev_of);
            for ev in evs {
                let key = ev.entity.to_ascii_lowercase();
                let topic = change_topic(&ev.entity);
                let frame = encode_reply(Body::Change(ev));
                let mut msg = Message::with_capacity(topic.len() + frame.len());
                if msg
                    .write_all(&topic)
                    .and_then(|_| msg.write_all(&frame))
                    .is_err()
                {
                    continue;
                }
                if let Err((e, _)) = rt.block_on(socket.publish(msg)) {
                    tracing::warn!("publishing a change: {e}");
                }
                shared
                    .metrics
                    .changes_published
                    .fetch_add(1, Ordering::Relaxed);
                last.insert(key, token);
            }
        }
    }
}
