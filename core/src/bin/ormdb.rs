//! The `ormdb` command line: inspect a database (`info`, `history`, `relations`), maintain it
//! (`checkpoint`, `gc`), and run the engine demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ormdb::{
    BinaryOp, DataType, Database, EntitySpec, Expr, FieldDef, FkAction, ForeignKeySpec, Options,
    SubscriptionFilter, Value,
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
    /// Build a small blog database and exercise the engine: constraints, cascades, soft delete,
    /// optimistic versions, change stream, timings.
    Demo {
        path: PathBuf,
        #[arg(long, default_value_t = 200)]
        users: i64,
    },
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
                .unwrap_or_else(|_| "warn".into()),
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
        Command::Demo { path, users } => demo(&path, users),
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
