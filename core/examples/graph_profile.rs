//! Profiling harness: builds users -> posts -> comments (100 x 10 x 10) and runs one graph fetch
//! shape in a loop. `cargo run --release --example graph_profile -- [one|all] [iterations]`.

use std::time::Instant;

use ormdb::{
    DataType, Database, EntitySpec, FieldDef, Filter, ForeignKeySpec, GraphFetch, Include, Value,
};

fn main() -> ormdb::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("all");
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let db = Database::temporary()?;
    let conn = db.connect();
    let mut tx = conn.begin()?;
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text))
            .field(FieldDef::new("email", DataType::Text)),
    )?;
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer).not_null())
            .field(FieldDef::new("title", DataType::Text))
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &["id"])),
    )?;
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["post_id"], "posts", &["id"])),
    )?;
    tx.commit()?;
    let mut tx = conn.begin()?;
    for u in 1..=100i64 {
        tx.insert(
            "users",
            &[
                ("id", Value::Integer(u)),
                ("name", format!("user {u}").into()),
                ("email", format!("u{u}@example.com").into()),
            ],
        )?;
        for p in 0..10 {
            let post = tx.insert(
                "posts",
                &[
                    ("user_id", Value::Integer(u)),
                    ("title", format!("post {p} of {u}").into()),
                    ("body", "lorem ipsum dolor sit amet".into()),
                ],
            )?;
            for c in 0..10 {
                tx.insert(
                    "comments",
                    &[
                        ("post_id", Value::Integer(post.row_id)),
                        ("body", format!("comment {c} on {}", post.row_id).into()),
                    ],
                )?;
            }
        }
    }
    tx.commit()?;
    let mut f =
        GraphFetch::new("users").include(Include::new("posts").include(Include::new("comments")));
    if case == "one" {
        f = f.filter(Filter::eq("id", 42));
    }
    let r = conn.fetch(&f)?;
    println!("rows {} lookups {}", r.stats.rows, r.stats.lookups);
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(conn.fetch(&f)?);
    }
    println!(
        "{case}: {:.1} us per fetch",
        t.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
    println!("{}", conn.explain(&f, true)?.text);
    Ok(())
}
