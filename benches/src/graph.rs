//! Graph fetch benchmarks (issue 3): a users -> posts -> comments dataset loaded identically into
//! ORMDB and SQLite, and three ways of loading "users with their posts with their comments":
//!
//! - [`ormdb_fetch`]: one ORMDB `conn.fetch` of a [`GraphFetch`] with nested includes; the
//!   result is the engine's `GraphResult` (entity blocks of owned `Value`s plus edge blocks).
//! - [`SqliteGraph::fetch_batched`] (a): the best hand-written SQLite equivalent, one prepared
//!   statement per level with an IN list of the level above's keys
//!   (`users WHERE id IN (..)`, `posts WHERE user_id IN (..)`, `comments WHERE post_id IN (..)`),
//!   assembled into nested [`User`] / [`Post`] / [`Comment`] structs with every column copied out.
//! - [`SqliteGraph::fetch_n_plus_1`] (b): the same structs, one query per parent per level (the
//!   ORM "N+1" pattern).
//!
//! Both SQLite variants read inside one `BEGIN` ... `COMMIT` read transaction so that, like the
//! ORMDB fetch, the whole graph comes from one snapshot. The same columns are read on every side.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use ormdb::{
    Connection, DataType, Database, EntitySpec, FieldDef, Filter, ForeignKeySpec, GraphFetch,
    GraphResult, Include, Value,
};

/// Shape of a dataset: `users` users, each with `posts_per` posts, each with `comments_per`
/// comments. Ids are dense from 1 at every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub users: i64,
    pub posts_per: i64,
    pub comments_per: i64,
}

impl Shape {
    /// The criterion dataset: 100 users x 10 posts x 10 comments.
    pub const BENCH: Shape = Shape {
        users: 100,
        posts_per: 10,
        comments_per: 10,
    };

    pub fn rows(&self) -> i64 {
        self.users * (1 + self.posts_per * (1 + self.comments_per))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub age: Option<i64>,
    pub posts: Vec<Post>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: i64,
    pub user_id: i64,
    pub title: Option<String>,
    pub score: Option<i64>,
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: i64,
    pub post_id: i64,
    pub body: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Data (identical in both engines)

fn user_values(u: i64) -> (String, Option<String>, Option<i64>) {
    (
        format!("user-{u:06}"),
        (u % 5 != 0).then(|| format!("user{u}@example.com")),
        (u % 7 != 0).then_some(18 + u % 60),
    )
}

fn post_values(p: i64) -> (Option<String>, Option<i64>) {
    (
        Some(format!("Post number {p:07} title")),
        Some((p * 7) % 11),
    )
}

fn comment_body(c: i64) -> Option<String> {
    (c % 13 != 0).then(|| format!("comment {c:08}: a short body of text, about sixty bytes long"))
}

fn opt_text(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::Text)
}

fn opt_int(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::Integer)
}

/// Creates `users`, `posts` (-> users) and `comments` (-> posts). ORMDB indexes the foreign key
/// fields by itself.
pub fn ormdb_blog_schema(db: &Database) {
    let conn = db.connect();
    let mut tx = conn.begin().expect("begin");
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(FieldDef::new("email", DataType::Text))
            .field(FieldDef::new("age", DataType::Integer)),
    )
    .expect("users");
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer).not_null())
            .field(FieldDef::new("title", DataType::Text))
            .field(FieldDef::new("score", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &["id"])),
    )
    .expect("posts");
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["post_id"], "posts", &["id"])),
    )
    .expect("comments");
    tx.commit().expect("commit schema");
}

/// Loads the dataset, `users_per_txn` users (with their posts and comments) per transaction.
pub fn ormdb_blog_load(db: &Database, shape: Shape, users_per_txn: i64) {
    let conn = db.connect();
    let mut u = 1;
    while u <= shape.users {
        let end = (u + users_per_txn - 1).min(shape.users);
        let mut tx = conn.begin().expect("begin");
        for uid in u..=end {
            let (name, email, age) = user_values(uid);
            tx.insert_positional(
                "users",
                vec![
                    Some(Value::Integer(uid)),
                    Some(Value::Text(name)),
                    Some(opt_text(email)),
                    Some(opt_int(age)),
                ],
            )
            .expect("insert user");
        }
        for uid in u..=end {
            for p in 0..shape.posts_per {
                let pid = (uid - 1) * shape.posts_per + p + 1;
                let (title, score) = post_values(pid);
                tx.insert_positional(
                    "posts",
                    vec![
                        Some(Value::Integer(pid)),
                        Some(Value::Integer(uid)),
                        Some(opt_text(title)),
                        Some(opt_int(score)),
                    ],
                )
                .expect("insert post");
                for c in 0..shape.comments_per {
                    let cid = (pid - 1) * shape.comments_per + c + 1;
                    tx.insert_positional(
                        "comments",
                        vec![
                            Some(Value::Integer(cid)),
                            Some(Value::Integer(pid)),
                            Some(opt_text(comment_body(cid))),
                        ],
                    )
                    .expect("insert comment");
                }
            }
        }
        tx.commit().expect("commit");
        u = end + 1;
    }
}

/// The same schema in SQLite, with the indexes ORMDB creates for foreign keys.
pub fn sqlite_blog_schema(c: &rusqlite::Connection) {
    c.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, age INTEGER);
         CREATE TABLE posts (id INTEGER PRIMARY KEY,
             user_id INTEGER NOT NULL REFERENCES users(id), title TEXT, score INTEGER);
         CREATE INDEX posts_user_id ON posts(user_id);
         CREATE TABLE comments (id INTEGER PRIMARY KEY,
             post_id INTEGER NOT NULL REFERENCES posts(id), body TEXT);
         CREATE INDEX comments_post_id ON comments(post_id);",
    )
    .expect("sqlite blog schema");
}

/// Loads the same dataset into SQLite, then runs `ANALYZE` (ORMDB keeps table statistics).
pub fn sqlite_blog_load(c: &rusqlite::Connection, shape: Shape, users_per_txn: i64) {
    let mut u = 1;
    while u <= shape.users {
        let end = (u + users_per_txn - 1).min(shape.users);
        c.execute_batch("BEGIN").expect("begin");
        {
            let mut su = c
                .prepare_cached("INSERT INTO users (id, name, email, age) VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare");
            for uid in u..=end {
                let (name, email, age) = user_values(uid);
                su.execute(rusqlite::params![uid, name, email, age])
                    .expect("insert user");
            }
            let mut sp = c
                .prepare_cached(
                    "INSERT INTO posts (id, user_id, title, score) VALUES (?1, ?2, ?3, ?4)",
                )
                .expect("prepare");
            let mut sc = c
                .prepare_cached("INSERT INTO comments (id, post_id, body) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for uid in u..=end {
                for p in 0..shape.posts_per {
                    let pid = (uid - 1) * shape.posts_per + p + 1;
                    let (title, score) = post_values(pid);
                    sp.execute(rusqlite::params![pid, uid, title, score])
                        .expect("insert post");
                    for cm in 0..shape.comments_per {
                        let cid = (pid - 1) * shape.comments_per + cm + 1;
                        sc.execute(rusqlite::params![cid, pid, comment_body(cid)])
                            .expect("insert comment");
                    }
                }
            }
        }
        c.execute_batch("COMMIT").expect("commit");
        u = end + 1;
    }
    c.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("analyze");
}

// ---------------------------------------------------------------------------------------------
// ORMDB

/// `users` with the given ids (equality for one id, IN otherwise), their posts and the posts'
/// comments; every field of every entity.
pub fn blog_fetch(ids: &[i64]) -> GraphFetch {
    let filter = if ids.len() == 1 {
        Filter::eq("id", ids[0])
    } else {
        Filter::in_list("id", ids.iter().map(|i| Value::Integer(*i)).collect())
    };
    GraphFetch::new("users")
        .filter(filter)
        .include(Include::new("posts").include(Include::new("comments")))
}

/// Runs the fetch; the result is fully materialized (owned values) as the engine returns it.
pub fn ormdb_fetch(conn: &Connection, f: &GraphFetch) -> GraphResult {
    conn.fetch(f).expect("fetch")
}

/// Rows in a result (all entity blocks), for checks and black-boxing.
pub fn graph_rows(r: &GraphResult) -> usize {
    r.entities.iter().map(|b| b.ids.len()).sum()
}

/// Turns an ORMDB result into the nested structs (what an ORM binding does with it), moving
/// the values out.
pub fn graph_into_nested(mut r: GraphResult) -> Vec<User> {
    fn take_block(r: &mut GraphResult, entity: &str) -> (Vec<i64>, Vec<Vec<Value>>, Vec<String>) {
        match r.entities.iter_mut().find(|b| b.entity == entity) {
            Some(b) => (
                std::mem::take(&mut b.ids),
                std::mem::take(&mut b.columns),
                b.fields.clone(),
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        }
    }
    fn col(cols: &mut [Vec<Value>], fields: &[String], name: &str) -> Vec<Value> {
        let f = fields.iter().position(|x| x == name).expect("field");
        std::mem::take(&mut cols[f])
    }
    fn text(v: Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    fn int(v: &Value) -> Option<i64> {
        match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
    let (cids, mut ccols, cf) = take_block(&mut r, "comments");
    let cpost = col(&mut ccols, &cf, "post_id");
    let cbody = col(&mut ccols, &cf, "body");
    let mut comments: HashMap<i64, Comment> = HashMap::with_capacity(cids.len());
    for ((id, post), body) in cids.into_iter().zip(&cpost).zip(cbody) {
        comments.insert(
            id,
            Comment {
                id,
                post_id: int(post).unwrap_or_default(),
                body: text(body),
            },
        );
    }
    let (pids, mut pcols, pf) = take_block(&mut r, "posts");
    let puser = col(&mut pcols, &pf, "user_id");
    let ptitle = col(&mut pcols, &pf, "title");
    let pscore = col(&mut pcols, &pf, "score");
    let mut posts: HashMap<i64, Post> = HashMap::with_capacity(pids.len());
    for (((id, user), title), score) in pids.into_iter().zip(&puser).zip(ptitle).zip(&pscore) {
        posts.insert(
            id,
            Post {
                id,
                user_id: int(user).unwrap_or_default(),
                title: text(title),
                score: int(score),
                comments: Vec::new(),
            },
        );
    }
    if let Some(e) = r.edges_at("posts.comments") {
        for (p, c) in e.parents.iter().zip(&e.children) {
            if let (Some(post), Some(cm)) = (posts.get_mut(p), comments.remove(c)) {
                post.comments.push(cm);
            }
        }
    }
    let (uids, mut ucols, uf) = take_block(&mut r, "users");
    let uname = col(&mut ucols, &uf, "name");
    let uemail = col(&mut ucols, &uf, "email");
    let uage = col(&mut ucols, &uf, "age");
    let mut users: HashMap<i64, User> = HashMap::with_capacity(uids.len());
    for (((id, name), email), age) in uids.into_iter().zip(uname).zip(uemail).zip(&uage) {
        users.insert(
            id,
            User {
                id,
                name: text(name).unwrap_or_default(),
                email: text(email),
                age: int(age),
                posts: Vec::new(),
            },
        );
    }
    if let Some(e) = r.edges_at("posts") {
        for (u, p) in e.parents.iter().zip(&e.children) {
            if let (Some(user), Some(post)) = (users.get_mut(u), posts.remove(p)) {
                user.posts.push(post);
            }
        }
    }
    r.roots.iter().filter_map(|id| users.remove(id)).collect()
}

// ---------------------------------------------------------------------------------------------
// SQLite

const USER_COLS: &str = "SELECT id, name, email, age FROM users";
const POST_COLS: &str = "SELECT id, user_id, title, score FROM posts";
const COMMENT_COLS: &str = "SELECT id, post_id, body FROM comments";

/// SQLite access for the graph benchmarks: one connection plus the IN-list statements' SQL
/// text, built once per list length (statements come from rusqlite's statement cache).
pub struct SqliteGraph {
    pub conn: rusqlite::Connection,
    sql: RefCell<HashMap<(u8, usize), std::rc::Rc<str>>>,
}

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        email: r.get(2)?,
        age: r.get(3)?,
        posts: Vec::new(),
    })
}

fn post_row(r: &rusqlite::Row) -> rusqlite::Result<Post> {
    Ok(Post {
        id: r.get(0)?,
        user_id: r.get(1)?,
        title: r.get(2)?,
        score: r.get(3)?,
        comments: Vec::new(),
    })
}

fn comment_row(r: &rusqlite::Row) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: r.get(0)?,
        post_id: r.get(1)?,
        body: r.get(2)?,
    })
}

impl SqliteGraph {
    pub fn new(conn: rusqlite::Connection) -> SqliteGraph {
        conn.set_prepared_statement_cache_capacity(256);
        SqliteGraph {
            conn,
            sql: RefCell::new(HashMap::new()),
        }
    }

    /// Opens `path` with the benchmark settings (WAL, `synchronous` of `mode`, foreign keys).
    pub fn open(path: &Path, mode: crate::Mode) -> SqliteGraph {
        SqliteGraph::new(crate::sqlite_open(path, mode))
    }

    /// `SELECT .. WHERE <key> IN (?, .., ?) ORDER BY <key>, id` for `n` keys.
    fn in_sql(&self, level: u8, n: usize) -> std::rc::Rc<str> {
        self.sql
            .borrow_mut()
            .entry((level, n))
            .or_insert_with(|| {
                let (cols, key) = match level {
                    0 => (USER_COLS, "id"),
                    1 => (POST_COLS, "user_id"),
                    _ => (COMMENT_COLS, "post_id"),
                };
                let mut q = String::with_capacity(cols.len() + 40 + 2 * n);
                q.push_str(cols);
                q.push_str(" WHERE ");
                q.push_str(key);
                q.push_str(" IN (");
                for i in 0..n {
                    q.push_str(if i == 0 { "?" } else { ",?" });
                }
                q.push_str(") ORDER BY ");
                q.push_str(key);
                if key != "id" {
                    q.push_str(", id");
                }
                q.into()
            })
            .clone()
    }

    fn query_in<T>(
        &self,
        level: u8,
        keys: &[i64],
        row: impl Fn(&rusqlite::Row) -> rusqlite::Result<T>,
        out: &mut Vec<T>,
    ) {
        if keys.is_empty() {
            return;
        }
        let sql = self.in_sql(level, keys.len());
        let mut st = self.conn.prepare_cached(&sql).expect("prepare");
        let rows = st
            .query_map(rusqlite::params_from_iter(keys.iter()), row)
            .expect("query");
        for r in rows {
            out.push(r.expect("row"));
        }
    }

    /// (a) One IN-list query per level, assembled into nested structs.
    pub fn fetch_batched(&self, ids: &[i64]) -> Vec<User> {
        self.conn.execute_batch("BEGIN").expect("begin");
        let mut users = Vec::with_capacity(ids.len());
        self.query_in(0, ids, user_row, &mut users);
        let user_ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let mut posts = Vec::new();
        self.query_in(1, &user_ids, post_row, &mut posts);
        let post_ids: Vec<i64> = posts.iter().map(|p| p.id).collect();
        let mut comments = Vec::new();
        self.query_in(2, &post_ids, comment_row, &mut comments);
        self.conn.execute_batch("COMMIT").expect("commit");

        let post_at: HashMap<i64, usize> = post_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        for c in comments {
            if let Some(&i) = post_at.get(&c.post_id) {
                posts[i].comments.push(c);
            }
        }
        let user_at: HashMap<i64, usize> = user_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        for p in posts {
            if let Some(&i) = user_at.get(&p.user_id) {
                users[i].posts.push(p);
            }
        }
        users
    }

    /// (b) N+1: the users in one query, then one query per user for its posts and one per post
    /// for its comments.
    pub fn fetch_n_plus_1(&self, ids: &[i64]) -> Vec<User> {
        self.conn.execute_batch("BEGIN").expect("begin");
        let mut users = Vec::with_capacity(ids.len());
        self.query_in(0, ids, user_row, &mut users);
        {
            let mut sp = self
                .conn
                .prepare_cached(&format!("{POST_COLS} WHERE user_id = ?1 ORDER BY id"))
                .expect("prepare");
            let mut sc = self
                .conn
                .prepare_cached(&format!("{COMMENT_COLS} WHERE post_id = ?1 ORDER BY id"))
                .expect("prepare");
            for u in &mut users {
                for p in sp.query_map([u.id], post_row).expect("query") {
                    u.posts.push(p.expect("row"));
                }
                for p in &mut u.posts {
                    for c in sc.query_map([p.id], comment_row).expect("query") {
                        p.comments.push(c.expect("row"));
                    }
                }
            }
        }
        self.conn.execute_batch("COMMIT").expect("commit");
        users
    }

    /// SQLite's plan for each statement the batched fetch runs (for the write-up).
    pub fn explain(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (level, n) in [(0u8, 100usize), (1, 100), (2, 1000)] {
            let sql = self.in_sql(level, n);
            let mut st = self
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare");
            let keys: Vec<i64> = (1..=n as i64).collect();
            let rows = st
                .query_map(rusqlite::params_from_iter(keys.iter()), |r| {
                    r.get::<_, String>(3)
                })
                .expect("explain");
            let plan: Vec<String> = rows.map(|r| r.expect("row")).collect();
            out.push(format!("level {level}: {}", plan.join("; ")));
        }
        out
    }
}

/// Rewrites comment `cid` in two commits (another body, then its own again), so the data ends
/// up unchanged but the `comments` table has been written: ORMDB drops its decoded image of the
/// table, SQLite readers on other connections see a changed WAL.
pub fn ormdb_touch_comment(conn: &Connection, cid: i64) {
    for body in [Value::Text("edited".into()), opt_text(comment_body(cid))] {
        let mut tx = conn.begin().expect("begin");
        tx.update("comments", cid, &[("body", body)])
            .expect("update")
            .expect("comment exists");
        tx.commit().expect("commit");
    }
}

/// The SQLite counterpart of [`ormdb_touch_comment`], on the given (writer) connection.
pub fn sqlite_touch_comment(c: &rusqlite::Connection, cid: i64) {
    let mut st = c
        .prepare_cached("UPDATE comments SET body = ?1 WHERE id = ?2")
        .expect("prepare");
    st.execute(rusqlite::params!["edited", cid])
        .expect("update");
    st.execute(rusqlite::params![comment_body(cid), cid])
        .expect("update");
}

/// Total rows in a nested result.
pub fn nested_rows(users: &[User]) -> usize {
    users
        .iter()
        .map(|u| 1 + u.posts.iter().map(|p| 1 + p.comments.len()).sum::<usize>())
        .sum()
}

/// The ids of `n` consecutive users starting at `first` (1-based, wrapping within `users`).
pub fn user_ids(first: i64, n: i64, users: i64) -> Vec<i64> {
    (0..n).map(|i| (first - 1 + i) % users + 1).collect()
}

/// ORMDB and SQLite databases with the same dataset, in temporary directories.
pub struct BlogFixture {
    pub db: Database,
    pub sqlite: SqliteGraph,
    pub shape: Shape,
    sqlite_path: std::path::PathBuf,
    mode: crate::Mode,
    _odir: tempfile::TempDir,
    _sdir: tempfile::TempDir,
}

impl BlogFixture {
    /// Loads `shape` into both engines (10 users per transaction) and checkpoints both.
    pub fn new(mode: crate::Mode, shape: Shape) -> BlogFixture {
        let odir = crate::temp_dir("ormdb-graph-");
        let db = crate::ormdb_open(odir.path(), mode, 64 << 20);
        ormdb_blog_schema(&db);
        ormdb_blog_load(&db, shape, 10);
        db.checkpoint().expect("checkpoint");
        let sdir = crate::temp_dir("sqlite-graph-");
        let sqlite_path = sdir.path().join("graph.db");
        let sqlite = SqliteGraph::open(&sqlite_path, mode);
        sqlite_blog_schema(&sqlite.conn);
        sqlite_blog_load(&sqlite.conn, shape, 10);
        BlogFixture {
            db,
            sqlite,
            shape,
            sqlite_path,
            mode,
            _odir: odir,
            _sdir: sdir,
        }
    }

    /// A second SQLite connection to the same database (a writer besides the reader).
    pub fn sqlite_writer(&self) -> rusqlite::Connection {
        crate::sqlite_open(&self.sqlite_path, self.mode)
    }

    /// Asserts that the three methods return the same nested data for `ids`.
    pub fn check(&self, ids: &[i64]) {
        let conn = self.db.connect();
        let o = graph_into_nested(ormdb_fetch(&conn, &blog_fetch(ids)));
        let a = self.sqlite.fetch_batched(ids);
        let b = self.sqlite.fetch_n_plus_1(ids);
        assert_eq!(o, a, "ORMDB and batched SQLite disagree");
        assert_eq!(a, b, "batched and N+1 SQLite disagree");
        let s = self.shape;
        let expect = ids.len() as i64 * (1 + s.posts_per * (1 + s.comments_per));
        assert_eq!(nested_rows(&o) as i64, expect);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_methods_agree() {
        let f = BlogFixture::new(
            crate::Mode::Normal,
            Shape {
                users: 12,
                posts_per: 3,
                comments_per: 4,
            },
        );
        f.check(&[5]);
        f.check(&user_ids(3, 8, 12));
        let conn = f.db.connect();
        let r = ormdb_fetch(&conn, &blog_fetch(&[1, 2]));
        assert_eq!(graph_rows(&r), 2 * (1 + 3 * 5));
    }
}
