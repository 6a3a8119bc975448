//! The `ormdb` command line: inspect a database (`info`, `history`, `relations`), maintain it
//! (`checkpoint`, `gc`), serve it to other processes (`serve`), and run the engine demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ormdb::{
    BinaryOp, DataType, Database, EntitySpec, Expr, FieldDef, Filter, FkAction, ForeignKeySpec,
    GraphFetch, Include, Options, OrderBy, SubscriptionFilter, Value,
};

#[derive(Parser)]
#[command(
    name = "ormdb",
    version,
    about = "ORMDB: an ORM-native relational database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tables, row counts, schema version and size of a database.
    Info { path: PathBuf },
    /// Every schema version with the entities it had.
    History { path: PathBuf },
    /// Relations derived from foreign keys.
    Relations { path: PathBuf },
    /// Flush the store and trim the commit log.
    Checkpoint { path: PathBuf },
    /// Garbage-collect old row versions.
    Gc { path: PathBuf },
    /// Engine metrics in Prometheus text format (after opening the database).
    Metrics { path: PathBuf },
    /// Run a graph fetch given as JSON and print the nested result and stats.
    Fetch { path: PathBuf, json: String },
    /// EXPLAIN a graph fetch given as JSON (with --analyze: run it and show actual figures).
    Explain {
        path: PathBuf,
        json: String,
        #[arg(long)]
        analyze: bool,
    },
    /// Serve the database to other processes over NNG (request/reply and change streams) until
    /// SIGINT or SIGTERM.
    Serve {
        path: PathBuf,
        /// Request endpoint, repeatable: tcp://127.0.0.1:PORT or ipc:///PATH.
        #[arg(long = "listen", required = true)]
        listen: Vec<String>,
        /// Change stream endpoint, repeatable (default: the next TCP port, or PATH.changes).
        #[arg(long = "changes-listen")]
        changes_listen: Vec<String>,
        /// Allow tcp:// endpoints and the metrics address on non-loopback interfaces.
        #[arg(long)]
        allow_remote: bool,
        /// Serve Prometheus metrics over HTTP on HOST:PORT.
        #[arg(long)]
        metrics: Option<String>,
        /// Requests executed at once.
        #[arg(long, default_value_t = 64)]
        workers: usize,
        /// Threads that execute requests (default: 4 per CPU, at least 4; at most --workers).
        /// Under --durability full a request thread does not wait for the disk. While long
        /// requests keep every one busy, more are started (up to --workers) and end when idle.
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds a session may stay idle before its transaction is rolled back.
        #[arg(long, default_value_t = 60.0)]
        session_idle_timeout: f64,
        /// Largest request accepted, in bytes.
        #[arg(long, default_value_t = ormdb::net::DEFAULT_MAX_REQUEST)]
        max_request_bytes: usize,
        /// Replies larger than this many bytes are sent in pieces.
        #[arg(long, default_value_t = ormdb::net::DEFAULT_REPLY_CHUNK)]
        reply_chunk_bytes: usize,
        /// Seconds a reply may wait for a requester that reads none of its replies (its
        /// connection still sending an earlier one) before it is dropped.
        #[arg(long, default_value_t = ormdb::net::DEFAULT_REPLY_TIMEOUT.as_secs_f64())]
        reply_timeout: f64,
        /// `full`: a commit is acknowledged once the commit log is synced (the default);
        /// `normal`: once it is written to the OS, synced on an interval.
        #[arg(long, default_value = "full")]
        durability: String,
        /// NNG's thread counts as TASK,POLLER (default: NNG's, two task threads and one
        /// poller per CPU).
        #[arg(long)]
        nng_threads: Option<String>,
    },
    /// Build a small blog database and exercise the engine: constraints, cascades, soft delete,
    /// optimistic versions, change stream, timings.
    Demo {
        path: PathBuf,
        #[arg(long, default_value_t = 200)]
        users: i64,
    },
}

/// The native graph fetch: users with their latest posts, each post's comments with their
/// author, in one call with one batched lookup per include node; EXPLAIN ANALYZE; and the same
/// graph loaded the N+1 way through point reads for comparison.
fn graph_fetch_demo(db: &Database, users: i64) -> ormdb::Result<()> {
    let conn = db.connect();
    let n = users.min(50);
    let fetch = GraphFetch::new("users")
        .filter(Filter::cmp("id", ormdb::CmpOp::Le, n))
        .order(OrderBy::asc("id"))
        .include(
            Include::new("posts")
                .order(OrderBy::desc("id"))
                .limit(5)
                .include(
                    Include::new("comments").include(Include::new("author").select(&["name"])),
                ),
        )
        .count("posts");
    conn.fetch(&fetch)?; // warm the plan cache and statistics
    let mut times = Vec::new();
    let mut r = conn.fetch(&fetch)?;
    for _ in 0..7 {
        let t = Instant::now();
        r = conn.fetch(&fetch)?;
        times.push(t.elapsed());
    }
    times.sort();
    let fetch_time = times[times.len() / 2];
    println!();
    println!(
        "graph fetch: {} users -> {} posts -> {} comments -> authors in {} (median of 7; {} rows, {} edges, {} internal lookups)",
        r.roots.len(),
        r.edges_at("posts").map_or(0, |e| e.children.len()),
        r.edges_at("posts.comments").map_or(0, |e| e.children.len()),
        ms_d(fetch_time),
        r.stats.rows,
        r.stats.edges,
        r.stats.lookups
    );
    let nested = r.to_nested_json(&|p| p.ends_with("author"));
    if let Some(first) = nested.get(0) {
        let mut s = serde_json::to_string(first).unwrap_or_default();
        if s.len() > 300 {
            let mut cut = 300;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str(" ...");
        }
        println!("first root, nested: {s}");
    }
    // The same graph, N+1 style: one lookup per parent row.
    let mut times = Vec::new();
    let mut lookups = 0u64;
    for _ in 0..7 {
        let t = Instant::now();
        lookups = n_plus_one(&conn, n)?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "same graph N+1 style through point reads: {} (median of 7; {lookups} lookups)",
        ms_d(times[times.len() / 2])
    );
    let e = conn.explain(&fetch, true)?;
    println!("\nEXPLAIN ANALYZE\n{}", e.text.trim_end());
    Ok(())
}

/// Loads the demo graph one lookup per parent row; returns the number of lookups.
fn n_plus_one(conn: &ormdb::Connection, n: i64) -> ormdb::Result<u64> {
    let mut tx = conn.begin()?;
    let mut lookups = 0u64;
    for u in 1..=n {
        lookups += 1;
        if tx.get("users", u)?.is_none() {
            continue;
        }
        lookups += 1;
        let mut posts =
            tx.find_by_index("posts", "ormdb_fk_posts_author_id", &[Value::Integer(u)])?;
        posts.sort_by_key(|p| std::cmp::Reverse(p.row_id));
        for p in posts.iter().filter(|p| !p.soft_deleted).take(5) {
            lookups += 1;
            let comments = tx.find_by_index(
                "comments",
                "ormdb_fk_comments_post_id",
                &[Value::Integer(p.row_id)],
            )?;
            for c in comments {
                if let Value::Integer(a) = c.values[2] {
                    lookups += 1;
                    tx.get("users", a)?;
                }
            }
        }
    }
    tx.rollback();
    Ok(lookups)
}

/// Whether the include at dotted `path` from `root` ends in a to-one relation.
fn to_one_path(schema: &ormdb::catalog::SchemaBundle, root: &str, path: &str) -> bool {
    let s = ormdb::catalog::Schema::new(schema.clone());
    let mut entity = root.to_string();
    let mut last = None;
    for name in path.split('.') {
        match s
            .relations_of(&entity)
            .find(|r| r.name.eq_ignore_ascii_case(name))
        {
            Some(r) => {
                entity = r.to.clone();
                last = Some(r.kind);
            }
            None => return false,
        }
    }
    matches!(
        last,
        Some(ormdb::RelationKind::ManyToOne | ormdb::RelationKind::OneToOne)
    )
}

fn ms_d(d: std::time::Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn open_existing(path: &PathBuf) -> ormdb::Result<Database> {
    Database::open(
        path,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn,anng=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> ormdb::Result<()> {
    match cmd {
        Command::Info { path } => print_info(&open_existing(&path)?),
        Command::History { path } => {
            let db = open_existing(&path)?;
            for (token, b) in db.schema_history()? {
                let names: Vec<&str> = b.entities.iter().map(|e| e.name.as_str()).collect();
                println!(
                    "version {:>4}  token {:>8}  entities: {}",
                    b.version,
                    token,
                    names.join(", ")
                );
            }
            Ok(())
        }
        Command::Relations { path } => {
            let db = open_existing(&path)?;
            let conn = db.connect();
            let tx = conn.begin()?;
            for r in tx.schema().relations() {
                let via = r
                    .far_fk_name
                    .as_ref()
                    .map(|_| format!(" via {}", r.fk_entity))
                    .unwrap_or_default();
                println!(
                    "{}.{:<20} {:?} -> {}{via} (on delete {})",
                    r.from,
                    r.name,
                    r.kind,
                    r.to,
                    r.on_delete.sql_name()
                );
            }
            Ok(())
        }
        Command::Checkpoint { path } => {
            let db = open_existing(&path)?;
            db.checkpoint()?;
            println!("checkpoint done");
            Ok(())
        }
        Command::Gc { path } => {
            let db = open_existing(&path)?;
            let s = db.gc()?;
            println!(
                "gc at horizon {}: {} row versions, {} index entries, {} change records removed",
                s.horizon,
                s.row_versions_removed,
                s.index_entries_removed,
                s.change_records_removed
            );
            Ok(())
        }
        Command::Metrics { path } => {
            print!("{}", open_existing(&path)?.metrics_text());
            Ok(())
        }
        Command::Fetch { path, json } => {
            let db = open_existing(&path)?;
            let f = GraphFetch::from_json(&json)?;
            let schema = db.schema();
            let r = db.connect().fetch(&f)?;
            // To-one relations print as objects: the include paths whose last relation is
            // many-to-one or one-to-one.
            let to_one = |p: &str| to_one_path(&schema, &f.root, p);
            let out = serde_json::json!({
                "data": r.to_nested_json(&to_one),
                "next_cursor": r.next_cursor.as_ref().map(|c| c.to_token()),
                "stats": r.stats,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(())
        }
        Command::Explain {
            path,
            json,
            analyze,
        } => {
            let db = open_existing(&path)?;
            let f = GraphFetch::from_json(&json)?;
            print!("{}", db.connect().explain(&f, analyze)?.text);
            Ok(())
        }
        Command::Demo { path, users } => demo(&path, users),
        Command::Serve {
            path,
            listen,
            changes_listen,
            allow_remote,
            metrics,
            workers,
            threads,
            session_idle_timeout,
            max_request_bytes,
            reply_chunk_bytes,
            reply_timeout,
            durability,
            nng_threads,
        } => {
            for (flag, secs) in [
                ("--session-idle-timeout", session_idle_timeout),
                ("--reply-timeout", reply_timeout),
            ] {
                if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                    return Err(ormdb::Error::new(
                        ormdb::SqlState::InvalidParameter,
                        format!("{flag} must be a positive number of seconds"),
                    ));
                }
            }
            let mut cfg = ormdb::net::ServeConfig::new(path, listen);
            cfg.change_listen = changes_listen;
            cfg.allow_remote = allow_remote;
            cfg.metrics = metrics;
            cfg.workers = workers;
            cfg.threads = threads;
            cfg.session_idle = std::time::Duration::from_secs_f64(session_idle_timeout);
            cfg.max_request_bytes = max_request_bytes;
            cfg.reply_chunk_bytes = reply_chunk_bytes;
            cfg.reply_timeout = std::time::Duration::from_secs_f64(reply_timeout);
            cfg.durability = match durability.to_ascii_lowercase().as_str() {
                "full" => ormdb::Durability::Full,
                "normal" => ormdb::Durability::Normal,
                other => {
                    return Err(ormdb::Error::new(
                        ormdb::SqlState::InvalidParameter,
                        format!("--durability {other:?}: expected full or normal"),
                    ))
                }
            };
            if let Some(spec) = nng_threads {
                let parsed = spec
                    .split_once(',')
                    .and_then(|(t, p)| Some((t.trim().parse().ok()?, p.trim().parse().ok()?)))
                    .filter(|&(t, p): &(usize, usize)| {
                        (1..=64).contains(&t) && (1..=64).contains(&p)
                    });
                cfg.nng_threads = Some(parsed.ok_or_else(|| {
                    ormdb::Error::new(
                        ormdb::SqlState::InvalidParameter,
                        format!("--nng-threads {spec:?}: expected TASK,POLLER, each 1 to 64"),
                    )
                })?);
            }
            ormdb::net::serve(cfg)
        }
    }
}

fn print_info(db: &Database) -> ormdb::Result<()> {
    let info = db.info()?;
    println!("database        {}", info.path.display());
    println!("schema version  {}", info.schema_version);
    println!("last commit     {}", info.last_commit);
    println!(
        "size on disk    {:.1} MiB",
        info.size_on_disk as f64 / (1 << 20) as f64
    );
    println!(
        "{:<24} {:>10} {:>7} {:>8} {:>12}",
        "table", "rows", "fields", "indexes", "soft delete"
    );
    for t in info.tables {
        println!(
            "{:<24} {:>10} {:>7} {:>8} {:>12}",
            t.name,
            t.rows,
            t.fields,
            t.indexes,
            if t.soft_delete { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn ms(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0)
}

fn demo(path: &PathBuf, users: i64) -> ormdb::Result<()> {
    let db = Database::open(path, Options::default())?;
    let conn = db.connect();
    let t = Instant::now();
    let mut tx = conn.begin()?;
    let created = tx.create_entity_if_not_exists(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("email", DataType::Text).not_null())
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(
                FieldDef::new("karma", DataType::Integer)
                    .not_null()
                    .default_value(0),
            )
            .unique(&["email"])
            .check(
                "karma_not_negative",
                Expr::bin(BinaryOp::Ge, Expr::named("karma"), Expr::lit(0)),
            ),
    )?;
    if !created {
        tx.rollback();
        println!(
            "{} already holds the demo schema; showing it as it is\n",
            path.display()
        );
        return print_info(&db);
    }
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("author_id", DataType::Integer).not_null())
            .field(FieldDef::new("title", DataType::Text).not_null())
            .soft_delete()
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[]).on_delete(FkAction::Cascade),
            ),
    )?;
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("body", DataType::Text).not_null())
            .foreign_key(
                ForeignKeySpec::new(&["post_id"], "posts", &[]).on_delete(FkAction::Cascade),
            )
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[]).on_delete(FkAction::SetNull),
            ),
    )?;
    tx.commit()?;
    println!(
        "schema created in {} (3 entities, foreign keys indexed automatically)",
        ms(t)
    );

    let mut sub = db.subscribe(None, SubscriptionFilter::entities(&["users"]))?;

    let t = Instant::now();
    let mut rows = 0u64;
    for u in 1..=users {
        let mut tx = conn.begin()?;
        let user = tx.insert(
            "users",
            &[
                ("email", format!("user{u}@example.com").into()),
                ("name", format!("User {u}").into()),
            ],
        )?;
        for p in 0..10 {
            let post = tx.insert(
                "posts",
                &[
                    ("author_id", user.row_id.into()),
                    ("title", format!("Post {p} by {u}").into()),
                ],
            )?;
            for c in 0..3 {
                tx.insert(
                    "comments",
                    &[
                        ("post_id", post.row_id.into()),
                        ("author_id", user.row_id.into()),
                        ("body", format!("comment {c}").into()),
                    ],
                )?;
            }
        }
        tx.commit()?;
        rows += 41;
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "loaded {users} users, {} posts, {} comments: {users} durable commits of 41 rows in {:.0} ms ({:.0} rows/s)",
        users * 10,
        users * 30,
        el * 1000.0,
        rows as f64 / el
    );

    // Constraints at write time.
    let mut tx = conn.begin()?;
    let dup = tx.insert(
        "users",
        &[
            ("email", "user1@example.com".into()),
            ("name", "Dup".into()),
        ],
    );
    println!(
        "duplicate email      -> {}",
        dup.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    let neg = tx.update("users", 1, &[("karma", Value::Integer(-5))]);
    println!(
        "negative karma       -> {}",
        neg.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    let orphan = tx.insert(
        "posts",
        &[
            ("author_id", Value::Integer(999_999)),
            ("title", "orphan".into()),
        ],
    );
    println!(
        "post with no author  -> {}",
        orphan.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    let wrong = tx.insert(
        "users",
        &[("email", Value::Integer(5)), ("name", Value::Blob(vec![1]))],
    );
    println!(
        "wrong value type     -> {}",
        wrong.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    tx.rollback();

    // Optimistic versions.
    let mut a = conn.begin()?;
    let v = a.get("users", 2)?.map(|r| r.version).unwrap_or(0);
    let w = a.update_versioned("users", 2, &[("karma", Value::Integer(10))], v)?;
    a.commit()?;
    let mut b = conn.begin()?;
    let stale = b.update_versioned("users", 2, &[("karma", Value::Integer(20))], v);
    println!(
        "version token {v} -> {:?}; stale update -> {}",
        w.map(|w| w.version),
        stale.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    b.rollback();

    // Soft delete and cascades.
    let t = Instant::now();
    let mut tx = conn.begin()?;
    tx.delete("posts", 1)?;
    let visible = tx.count("posts")?;
    let res = tx.delete("users", 3)?;
    tx.commit()?;
    println!(
        "soft-deleted post 1 ({visible} posts visible); deleting user 3 cascaded to {} rows in {}",
        res.map_or(0, |r| r.cascaded),
        ms(t)
    );

    // Snapshot reads and a full scan.
    let t = Instant::now();
    let mut tx = conn.begin()?;
    let mut n = 0;
    for r in tx.scan("comments")? {
        r?;
        n += 1;
    }
    println!("scanned {n} comments at one snapshot in {}", ms(t));
    let t = Instant::now();
    for id in 1..=1000i64 {
        tx.get("users", (id % users) + 1)?;
    }
    println!("1000 point reads by identity in {}", ms(t));
    tx.rollback();

    graph_fetch_demo(&db, users)?;

    let mut events = 0;
    while let Some(cs) = sub.try_next()? {
        events += cs.entities.len();
    }
    println!(
        "change stream (users only): {events} entity deltas, last token {}",
        sub.position()
    );
    println!();
    print_info(&db)
}
