//! Join workloads as ORMs emit them, shared by the `sql_frontend` criterion bench and the
//! `sql_profile` binary: the same schema, rows (SQL text, identical for both engines) and
//! query text.

use crate::Rng;

/// Django many-to-many prefetch: tags, books and the link table Django creates.
pub const M2M_TAGS: i64 = 5_000;
pub const M2M_BOOKS: i64 = 2_000;
/// Book ids in the prefetch's IN list.
pub const M2M_IN: usize = 250;
pub const M2M_SCHEMA: &str = "CREATE TABLE tag (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(50) NOT NULL);
CREATE TABLE book (id INTEGER PRIMARY KEY AUTOINCREMENT, title VARCHAR(100) NOT NULL);
CREATE TABLE book_tags (id INTEGER PRIMARY KEY AUTOINCREMENT, book_id BIGINT NOT NULL REFERENCES book (id), tag_id BIGINT NOT NULL REFERENCES tag (id));
CREATE UNIQUE INDEX book_tags_book_id_tag_id_uniq ON book_tags (book_id, tag_id);
CREATE INDEX book_tags_book_id ON book_tags (book_id);
CREATE INDEX book_tags_tag_id ON book_tags (tag_id)";

/// The many-to-many fixture's rows as SQL: every tag, every book with up to 5 random tags.
pub fn m2m_rows() -> Vec<String> {
    let mut out = Vec::new();
    let mut rng = Rng::new(23);
    for t in 1..=M2M_TAGS {
        out.push(format!("INSERT INTO tag (id, name) VALUES ({t}, 'tag{t}')"));
    }
    for b in 1..=M2M_BOOKS {
        out.push(format!(
            "INSERT INTO book (id, title) VALUES ({b}, 'book{b}')"
        ));
        let mut tags: Vec<i64> = (0..5).map(|_| rng.id(M2M_TAGS)).collect();
        tags.sort_unstable();
        tags.dedup();
        for t in tags {
            out.push(format!(
                "INSERT INTO book_tags (book_id, tag_id) VALUES ({b}, {t})"
            ));
        }
    }
    out
}

/// `prefetch_related('tags')` for [`M2M_IN`] books, as Django 5.2 sends it.
pub fn m2m_query() -> String {
    format!(
        "SELECT (book_tags.book_id) AS _prefetch_related_val_book_id, tag.id, tag.name FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE book_tags.book_id IN ({})",
        vec!["?"; M2M_IN].join(", ")
    )
}

/// Django `select_related('author')` over a nullable foreign key: every post with its
/// author through a LEFT OUTER JOIN on the author's primary key.
pub const SR_POSTS: i64 = 1_000;
pub const SR_USERS: i64 = 300;
pub const SR_SCHEMA: &str = "CREATE TABLE \"blog_user\" (\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT, \"name\" varchar(100) NOT NULL, \"email\" varchar(254) NOT NULL);
CREATE TABLE \"blog_post\" (\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT, \"title\" varchar(200) NOT NULL, \"view_count\" integer NOT NULL, \"author_id\" bigint NULL REFERENCES \"blog_user\" (\"id\") DEFERRABLE INITIALLY DEFERRED);
CREATE INDEX \"blog_post_author_id_idx\" ON \"blog_post\" (\"author_id\")";

/// Users, then posts; one post in ten has no author (NULL key: the LEFT JOIN's NULL row).
pub fn sr_rows() -> Vec<String> {
    let mut out = Vec::new();
    let mut rng = Rng::new(31);
    for u in 1..=SR_USERS {
        out.push(format!(
            "INSERT INTO blog_user (id, name, email) VALUES ({u}, 'user{u}', 'user{u}@example.com')"
        ));
    }
    for p in 1..=SR_POSTS {
        let author = if p % 10 == 0 {
            "NULL".to_string()
        } else {
            rng.id(SR_USERS).to_string()
        };
        out.push(format!(
            "INSERT INTO blog_post (id, title, view_count, author_id) VALUES ({p}, 'post {p}', {}, {author})",
            p * 7 % 101
        ));
    }
    out
}

/// `Post.objects.select_related('author')` (the author foreign key is nullable, so Django
/// joins with LEFT OUTER JOIN).
pub const SR_QUERY: &str = "SELECT \"blog_post\".\"id\", \"blog_post\".\"title\", \"blog_post\".\"view_count\", \"blog_post\".\"author_id\", \"blog_user\".\"id\", \"blog_user\".\"name\", \"blog_user\".\"email\" FROM \"blog_post\" LEFT OUTER JOIN \"blog_user\" ON (\"blog_post\".\"author_id\" = \"blog_user\".\"id\")";
