//! Change streams over PUB/SUB against a real server: every committed delta reaches each of
//! several subscribers (tcp://, ipc://, one filtered, one for all entities) exactly once and in
//! commit order; a subscriber dropped mid-stream resumes from its token, also across a server
//! kill and restart; a subscriber that stops reading does not hold commits back, is told it
//! fell behind, and still receives everything once; the same holds when concurrent writers
//! make the publisher batch several commits per message.

mod net_support;
use net_support::*;

use std::time::{Duration, Instant};

use ormdb::net::{ChangeStream, Client, StreamEvent, StreamOptions};
use ormdb::{ChangeKind, ChangeToken, Params, Value};

/// (token, row id) of every `entity` change received, until `n` of them arrived; and the
/// number of lag notices. Changes to other entities go to `others`.
async fn collect_with(
    s: &mut ChangeStream,
    entity: &str,
    n: usize,
    others: &mut Vec<(ChangeToken, String)>,
) -> (Vec<(ChangeToken, i64)>, usize) {
    let mut got = Vec::new();
    let mut lagged = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} changes arrived",
            got.len()
        );
        match s.next_timeout(Duration::from_secs(5)).await.unwrap() {
            Some(StreamEvent::Change(ev)) => {
                if ev.entity.eq_ignore_ascii_case(entity) {
                    for c in &ev.changes {
                        assert_eq!(c.kind, ChangeKind::Insert);
                        got.push((ev.token, c.row_id));
                    }
                } else {
                    others.push((ev.token, ev.entity.clone()));
                }
            }
            Some(StreamEvent::Lagged { .. }) => lagged += 1,
            None => {}
        }
    }
    (got, lagged)
}

async fn collect(s: &mut ChangeStream, entity: &str, n: usize) -> (Vec<(ChangeToken, i64)>, usize) {
    collect_with(s, entity, n, &mut Vec::new()).await
}

/// Nothing more arrives for `entity` within a short wait (no duplicates after the last one).
async fn assert_quiet(s: &mut ChangeStream, entity: &str) {
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        if let Some(StreamEvent::Change(ev)) =
            s.next_timeout(Duration::from_millis(300)).await.unwrap()
        {
            assert!(
                !ev.entity.eq_ignore_ascii_case(entity),
                "unexpected extra change {ev:?}"
            );
        }
    }
}

fn check_in_order(got: &[(ChangeToken, i64)], ids: std::ops::RangeInclusive<i64>) {
    let want: Vec<i64> = ids.collect();
    let rows: Vec<i64> = got.iter().map(|g| g.1).collect();
    assert_eq!(rows, want, "every change once, in commit order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "tokens increase");
}

async fn insert_items(c: &Client, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        c.sql(
            "INSERT INTO items (id, label) VALUES (?, ?)",
            Params::Positional(vec![Value::Integer(id), Value::from("x")]),
        )
        .await
        .unwrap();
    }
}

async fn setup(c: &Client) {
    c.sql(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT);
         CREATE TABLE other (id INTEGER PRIMARY KEY);",
        Params::None,
    )
    .await
    .unwrap();
}

#[test]
fn several_subscribers_get_every_change_once_in_order() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let tcp = Client::connect(&server.tcp).await.unwrap();
        let ipc = Client::connect(&server.ipc).await.unwrap();
        setup(&tcp).await;
        let mut subs = [
            ChangeStream::open(&tcp, &["items"], None).await.unwrap(),
            ChangeStream::open(&ipc, &["ITEMS"], None).await.unwrap(),
            ChangeStream::open(&ipc, &[], None).await.unwrap(),
        ];
        let n = 300;
        let writer = {
            let tcp = tcp.clone();
            tokio::spawn(async move {
                for id in 1..=n {
                    insert_items(&tcp, id..=id).await;
                    if id % 50 == 0 {
                        tcp.sql(
                            "INSERT INTO other (id) VALUES (?)",
                            Params::Positional(vec![Value::Integer(id)]),
                        )
                        .await
                        .unwrap();
                    }
                }
            })
        };
        let mut all_others = Vec::new();
        for (i, s) in subs.iter_mut().enumerate() {
            let mut others = Vec::new();
            let (got, _) = collect_with(s, "items", n as usize, &mut others).await;
            check_in_order(&got, 1..=n);
            if i < 2 {
                assert!(others.is_empty(), "a filtered subscriber got {others:?}");
            } else {
                all_others = others;
            }
        }
        writer.await.unwrap();
        // The unfiltered subscriber also saw `other`, once each, in order, interleaved by token.
        let (more, _) = collect(&mut subs[2], "other", 6 - all_others.len()).await;
        let mut tokens: Vec<ChangeToken> = all_others.iter().map(|o| o.0).collect();
        tokens.extend(more.iter().map(|m| m.0));
        assert_eq!(tokens.len(), 6);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]));
        for s in subs.iter_mut().take(2) {
            assert_quiet(s, "items").await;
        }
    });
}

#[test]
fn resume_from_a_token_after_the_subscriber_and_the_server_are_killed() {
    let mut server = Server::start(&[]);
    let rt = runtime();
    let token = rt.block_on(async {
        let c = Client::connect(&server.tcp).await.unwrap();
        setup(&c).await;
        let mut s = ChangeStream::open(&c, &["items"], None).await.unwrap();
        insert_items(&c, 1..=20).await;
        let (got, _) = collect(&mut s, "items", 10).await;
        check_in_order(&got, 1..=10);
        let token = got[9].0;
        drop(s); // the subscriber dies after the 10th change
        insert_items(&c, 21..=40).await;
        let mut s = ChangeStream::open(&c, &["items"], Some(token))
            .await
            .unwrap();
        let (got, _) = collect(&mut s, "items", 30).await;
        check_in_order(&got, 11..=40);
        assert_quiet(&mut s, "items").await;
        got[29].0
    });
    // Kill the server outright; restart it on the same database and resume.
    server.kill();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let path = server.db_path.clone();
    let server = Server::start_at(dir, path, &[]);
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        insert_items(&c, 41..=45).await;
        let mut s = ChangeStream::open(&c, &["items"], Some(token))
            .await
            .unwrap();
        insert_items(&c, 46..=50).await;
        let (got, _) = collect(&mut s, "items", 10).await;
        check_in_order(&got, 41..=50);
        assert_quiet(&mut s, "items").await;
    });
}

#[test]
fn a_slow_subscriber_does_not_block_commits_and_is_told_it_fell_behind() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.tcp).await.unwrap();
        setup(&c).await;
        let opts = StreamOptions {
            live_queue: 4,
            idle_resync: Duration::from_secs(2),
            ..StreamOptions::default()
        };
        let mut slow = ChangeStream::open_with(&c, &["items"], None, opts)
            .await
            .unwrap();
        let mut fast = ChangeStream::open(&c, &["items"], None).await.unwrap();
        let n = 400;
        // The slow subscriber reads nothing while every commit is made and acknowledged.
        let started = Instant::now();
        let writer = tokio::spawn({
            let c = c.clone();
            async move { insert_items(&c, 1..=n).await }
        });
        let (got, _) = collect(&mut fast, "items", n as usize).await;
        check_in_order(&got, 1..=n);
        writer.await.unwrap();
        let write_time = started.elapsed();
        // One more commit after the backlog: its `prev` reveals the hole to the slow reader.
        insert_items(&c, n + 1..=n + 1).await;
        let (got, lagged) = collect(&mut slow, "items", n as usize + 1).await;
        check_in_order(&got, 1..=n + 1);
        assert!(lagged > 0, "the slow subscriber was told it fell behind");
        assert_quiet(&mut slow, "items").await;
        // Why: its own queue overflowed (the socket's did not), and the notices it counted are
        // the ones it handed out; the reader that kept up was never told it fell behind.
        let st = slow.stats();
        assert!(st.overflows > 0, "{st:?}");
        assert_eq!(st.lag_notices, lagged as u64, "{st:?}");
        assert_eq!(st.events, n as u64 + 1, "{st:?}");
        let st = fast.stats();
        assert_eq!((st.lag_notices, st.overflows, st.gaps), (0, 0, 0), "{st:?}");
        assert!(st.messages > 0 && st.events == n as u64, "{st:?}");
        eprintln!("{n} commits in {write_time:?} with a stalled subscriber; {lagged} lag notices");
    });
}

/// Concurrent writers make several commits visible at once, so the publisher sends them in
/// batched messages: every subscriber still gets each change once with increasing tokens; one
/// that is dropped halfway resumes from its position without gaps or repeats; one that stalls
/// (a one-message queue, so whole batches are dropped) is told it fell behind and still gets
/// everything once, in order.
#[test]
fn batched_changes_from_concurrent_writers_arrive_once_in_order_and_resume() {
    let server = Server::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&server.ipc).await.unwrap();
        setup(&c).await;
        let mut steady = ChangeStream::open(&c, &["items"], None).await.unwrap();
        let mut all = ChangeStream::open(&c, &[], None).await.unwrap();
        let mut resumed = ChangeStream::open(&c, &["items"], None).await.unwrap();
        let stalled_opts = StreamOptions {
            live_queue: 1,
            idle_resync: Duration::from_secs(5),
            ..StreamOptions::default()
        };
        let mut stalled = ChangeStream::open_with(&c, &["items"], None, stalled_opts)
            .await
            .unwrap();
        let (writers, per) = (16i64, 40i64);
        let n = (writers * per) as usize;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let c = Client::connect(&server.ipc).await.unwrap();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let id = w * per + i + 1;
                    insert_items(&c, id..=id).await;
                    if i % 10 == 0 {
                        c.sql(
                            "INSERT INTO other (id) VALUES (?)",
                            Params::Positional(vec![Value::Integer(id)]),
                        )
                        .await
                        .unwrap();
                    }
                }
            }));
        }
        // Concurrent commits: row ids arrive in token order, not id order; each id once.
        let check = |got: &[(ChangeToken, i64)]| {
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "tokens increase");
            let mut ids: Vec<i64> = got.iter().map(|g| g.1).collect();
            ids.sort_unstable();
            assert_eq!(ids, (1..=n as i64).collect::<Vec<_>>(), "each change once");
        };
        let (first, _) = collect(&mut resumed, "items", n / 3).await;
        // Events already received but not yet handed out are not counted as delivered.
        let from = resumed.position();
        assert!(from >= first.last().unwrap().0);
        drop(resumed);
        let (got, _) = collect(&mut steady, "items", n).await;
        check(&got);
        let mut others = Vec::new();
        let (got_all, _) = collect_with(&mut all, "items", n, &mut others).await;
        check(&got_all);
        for t in tasks {
            t.await.unwrap();
        }
        let mut resumed = ChangeStream::open(&c, &["items"], Some(from))
            .await
            .unwrap();
        let (rest, _) = collect(&mut resumed, "items", n - first.len()).await;
        let mut joined = first.clone();
        joined.extend(rest);
        check(&joined);
        // The stalled reader starts reading only now, with every batch long published.
        let (got, lagged) = collect(&mut stalled, "items", n).await;
        check(&got);
        assert!(lagged > 0, "the stalled subscriber was told it fell behind");
        // `other` changes reached the unfiltered subscriber once each, interleaved by token.
        let (more, _) = collect(&mut all, "other", 64 - others.len()).await;
        let mut tokens: Vec<ChangeToken> = others.iter().map(|o| o.0).collect();
        tokens.extend(more.iter().map(|m| m.0));
        assert_eq!(tokens.len(), 64);
        assert!(tokens.windows(2).all(|w| w[0] < w[1]));
        for s in [&mut steady, &mut resumed, &mut stalled] {
            assert_quiet(s, "items").await;
        }
    });
}
