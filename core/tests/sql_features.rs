//! Feature scripts per area of the SQL front end, each statement checked against SQLite.

mod sqldiff;

use sqldiff::Diff;

use sqldiff::run_clean as run;

const SCHEMA: &str = r#"
CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, name VARCHAR(50), age INT, score REAL DEFAULT 0.5, created DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT NOT NULL, views INTEGER NOT NULL DEFAULT 0, published BOOLEAN, CHECK (views >= 0));
CREATE INDEX ix_posts_user ON posts (user_id);
CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE post_tag (post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE, tag_id INTEGER NOT NULL REFERENCES tags(id), PRIMARY KEY (post_id, tag_id));
INSERT INTO users (email, name, age) VALUES ('a@x', 'Alice', 30), ('b@x', 'Bob', NULL), ('c@x', 'Carol', 41);
INSERT INTO users (email, name, age, score) VALUES ('d@x', 'dave', 25, 2.25);
INSERT INTO posts (user_id, title, views, published) VALUES (1, 'Hello', 10, 1), (1, 'Draft', 0, 0), (2, 'Bob post', 5, 1), (3, 'Carol 1', 7, NULL), (3, 'Carol 2', 7, 1);
INSERT INTO tags (name) VALUES ('rust'), ('db'), ('orm');
INSERT INTO post_tag VALUES (1, 1), (1, 2), (3, 3), (4, 1);
"#;

#[test]
fn selects_and_expressions() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
SELECT id, email, name, age, score FROM users ORDER BY id;
SELECT name AS n, age + 1, age * 2 - 1, age / 7, age % 7, -age, score * 2 FROM users ORDER BY id;
SELECT * FROM users WHERE age > 26 ORDER BY name;
SELECT * FROM users WHERE age IS NULL;
SELECT name FROM users WHERE age BETWEEN 25 AND 35 ORDER BY 1;
SELECT name FROM users WHERE age NOT BETWEEN 25 AND 35 ORDER BY 1;
SELECT name FROM users WHERE name LIKE 'a%' ORDER BY 1;
SELECT name FROM users WHERE name LIKE '%O%' ORDER BY 1;
SELECT name FROM users WHERE name GLOB '[A-C]*' ORDER BY 1;
SELECT name FROM users WHERE email LIKE 'a!@%' ESCAPE '!';
SELECT name || ' <' || email || '>' FROM users ORDER BY id;
SELECT CASE WHEN age > 30 THEN 'old' WHEN age IS NULL THEN 'unknown' ELSE 'young' END FROM users ORDER BY id;
SELECT CASE age WHEN 30 THEN 'thirty' ELSE 'other' END FROM users ORDER BY id;
SELECT COALESCE(age, -1), IFNULL(age, 0), NULLIF(age, 30), typeof(age), typeof(score) FROM users ORDER BY id;
SELECT CAST(age AS TEXT), CAST('12abc' AS INTEGER), CAST(score AS INTEGER), CAST('3.0' AS NUMERIC), CAST(1 AS REAL) FROM users ORDER BY id;
SELECT lower(name), upper(name), length(name), substr(name, 2, 2), substr(name, -2), instr(name, 'a'), replace(name, 'a', 'A') FROM users ORDER BY id;
SELECT trim('  x  '), ltrim('xxay', 'x'), rtrim('ayy', 'y'), abs(-3), abs(2.5), round(2.5), round(-2.5), round(3.14159, 2);
SELECT max(1, 2, 3), min('a', 'b'), max(1, NULL), hex('abc'), quote('it''s'), quote(1.5), quote(NULL), char(72, 105), unicode('A');
SELECT printf('%d-%5.2f-%s-%x', 42, 3.14159, 'str', 255), printf('%05d|%-4s|', 7, 'ab');
SELECT 1 = 1, 1 = '1', '1' = 1, 1 < 'a', NULL = NULL, NULL IS NULL, 2 > 1 AND NULL, 2 > 1 OR NULL, NOT NULL;
SELECT 10 / 3, 10.0 / 4, 10 / 0, 10 % 0, 1 << 3, 16 >> 2, 6 & 3, 6 | 3, ~5;
SELECT 9223372036854775807 + 1, -9223372036854775808 - 1, 2 * 4611686018427387904;
SELECT id FROM users WHERE id IN (1, 3, NULL) ORDER BY id;
SELECT id FROM users WHERE id NOT IN (1, 3, NULL);
SELECT id FROM users WHERE id NOT IN (1, 3) ORDER BY id;
SELECT id FROM users WHERE id IN ('1', '2') ORDER BY id;
SELECT id FROM users WHERE age = '30';
SELECT id FROM users WHERE name = 30;
SELECT sqlite_version(), typeof(random()), length(randomblob(4));
SELECT date('2024-02-28', '+1 day'), datetime('2024-01-01 10:00:00', '+90 minutes'), time('12:30:45'), julianday('2000-01-01'), strftime('%Y-%m-%d %H:%M', '2024-03-04 05:06:07');
SELECT date('2024-01-31', '+1 month'), date('2024-05-17', 'start of month'), strftime('%s', '2024-01-01 00:00:00'), unixepoch('2024-01-01');
SELECT "name" FROM users WHERE "id" = 1;
SELECT `name` FROM `users` WHERE [id] = 2;
SELECT main.users.name FROM main.users WHERE main.users.id = 3;
SELECT 1;
SELECT 'a' AS x UNION SELECT 'b' ORDER BY x DESC;
SELECT id FROM users LIMIT 2 OFFSET 1;
SELECT id FROM users ORDER BY id LIMIT -1 OFFSET 2;
SELECT id FROM users ORDER BY id LIMIT 1, 2;
SELECT age FROM users ORDER BY age NULLS LAST, id;
SELECT age FROM users ORDER BY age DESC NULLS FIRST, id;
SELECT age FROM users ORDER BY age DESC, id;
SELECT DISTINCT user_id FROM posts ORDER BY 1;
SELECT rowid, id FROM tags ORDER BY rowid;
SELECT x.name FROM users AS x WHERE x.id = 2;
"#
    ));
}

#[test]
fn joins_groups_subqueries() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
SELECT u.name, p.title FROM users u JOIN posts p ON p.user_id = u.id ORDER BY u.id, p.id;
SELECT u.name, p.title FROM users u LEFT JOIN posts p ON p.user_id = u.id ORDER BY u.id, p.id;
SELECT u.name, p.title FROM users u LEFT OUTER JOIN posts p ON p.user_id = u.id AND p.views > 6 ORDER BY u.id, p.id;
SELECT u.name, t.name FROM users u CROSS JOIN tags t ORDER BY u.id, t.id;
SELECT u.name, t.name FROM users u, tags t WHERE u.id = t.id ORDER BY u.id;
SELECT p.title, t.name FROM posts p JOIN post_tag pt ON pt.post_id = p.id JOIN tags t ON t.id = pt.tag_id ORDER BY p.id, t.id;
SELECT a.name, b.name FROM users a JOIN users b ON a.age < b.age ORDER BY a.id, b.id;
SELECT user_id, count(*), sum(views), avg(views), min(title), max(title), total(views) FROM posts GROUP BY user_id ORDER BY user_id;
SELECT user_id, count(*) AS c FROM posts GROUP BY user_id HAVING count(*) > 1 ORDER BY c DESC, user_id;
SELECT count(*), count(age), count(DISTINCT age), sum(age), avg(age), min(age), max(age) FROM users;
SELECT count(*), sum(age), avg(age), min(age), group_concat(name) FROM users WHERE id > 100;
SELECT group_concat(name, '|') FROM (SELECT name FROM users ORDER BY id);
SELECT views, count(*) FROM posts GROUP BY views ORDER BY views;
SELECT published, count(*) FROM posts GROUP BY 1 ORDER BY 1;
SELECT count(DISTINCT user_id) FROM posts;
SELECT u.name, (SELECT count(*) FROM posts p WHERE p.user_id = u.id) AS n FROM users u ORDER BY u.id;
SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id AND p.views > 6) ORDER BY 1;
SELECT name FROM users u WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id) ORDER BY 1;
SELECT name FROM users WHERE id IN (SELECT user_id FROM posts WHERE views = 7) ORDER BY 1;
SELECT name FROM users WHERE id NOT IN (SELECT user_id FROM posts) ORDER BY 1;
SELECT (SELECT max(views) FROM posts), (SELECT title FROM posts WHERE id = 99);
SELECT t.n FROM (SELECT name AS n, age FROM users WHERE age > 20) AS t ORDER BY t.age;
SELECT * FROM (SELECT user_id, count(*) AS c FROM posts GROUP BY user_id) WHERE c > 1;
WITH big AS (SELECT * FROM posts WHERE views > 5) SELECT title FROM big ORDER BY id;
WITH a(x) AS (SELECT 1 UNION ALL SELECT 2), b AS (SELECT x * 10 AS y FROM a) SELECT * FROM a JOIN b ON b.y = a.x * 10 ORDER BY x;
SELECT id FROM users UNION SELECT user_id FROM posts ORDER BY 1;
SELECT id FROM users UNION ALL SELECT user_id FROM posts ORDER BY 1;
SELECT id FROM users INTERSECT SELECT user_id FROM posts ORDER BY 1;
SELECT id FROM users EXCEPT SELECT user_id FROM posts ORDER BY 1;
SELECT user_id FROM posts UNION SELECT id FROM tags;
SELECT u.id, count(p.id) FROM users u LEFT JOIN posts p ON p.user_id = u.id GROUP BY u.id ORDER BY u.id;
SELECT u.name FROM users u JOIN posts p USING (id) ORDER BY 1;
SELECT max(views), title FROM posts;
SELECT sum(score) FROM users;
SELECT user_id, sum(views) * 2 AS s FROM posts GROUP BY user_id ORDER BY s, user_id;
SELECT count(*) FROM posts WHERE user_id IN (SELECT id FROM users WHERE age > 26);
"#
    ));
}

#[test]
fn writes_and_counts() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
INSERT INTO tags (name) VALUES ('x') RETURNING id, name;
INSERT INTO tags (name) VALUES ('y'), ('z') RETURNING *;
INSERT OR IGNORE INTO tags (name) VALUES ('x');
INSERT OR IGNORE INTO tags (name) VALUES ('w'), ('x'), ('v');
INSERT INTO tags (name) VALUES ('x');
INSERT OR REPLACE INTO tags (id, name) VALUES (1, 'rust2');
INSERT OR REPLACE INTO tags (name) VALUES ('z');
SELECT * FROM tags ORDER BY id;
INSERT INTO tags (name) VALUES ('orm') ON CONFLICT (name) DO NOTHING;
INSERT INTO tags (name) VALUES ('orm') ON CONFLICT DO NOTHING;
INSERT INTO tags (id, name) VALUES (3, 'new3') ON CONFLICT (id) DO UPDATE SET name = excluded.name || '!' ;
INSERT INTO tags (id, name) VALUES (3, 'again') ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE tags.name = 'nomatch';
INSERT INTO tags (name) VALUES ('q') ON CONFLICT (name) DO UPDATE SET name = 'qq' RETURNING id, name;
SELECT * FROM tags ORDER BY id;
UPDATE posts SET views = views + 1 WHERE user_id = 1;
UPDATE posts SET views = views + 1 WHERE user_id = 1 RETURNING id, views;
UPDATE posts SET title = upper(title), published = NULL WHERE id IN (2, 3);
UPDATE posts SET views = -1 WHERE id = 1;
UPDATE users SET age = age + 1;
SELECT * FROM posts ORDER BY id;
DELETE FROM post_tag WHERE tag_id = 3 RETURNING post_id;
DELETE FROM posts WHERE id = 4;
DELETE FROM posts WHERE views > 1000;
DELETE FROM users WHERE id = 1;
SELECT count(*) FROM posts;
SELECT count(*) FROM post_tag;
INSERT INTO posts (user_id, title) VALUES (99, 'orphan');
INSERT INTO posts (user_id, title) VALUES (NULL, 'no user');
INSERT INTO users (email) VALUES ('b@x');
INSERT INTO posts (user_id, title, views) VALUES (2, 'neg', -5);
INSERT INTO posts (user_id, title) SELECT id, 'copy of ' || name FROM users WHERE age IS NOT NULL;
SELECT id, user_id, title, views FROM posts ORDER BY id;
INSERT INTO tags DEFAULT VALUES;
SELECT last_insert_rowid(), changes(), total_changes();
INSERT INTO tags VALUES (100, 'hundred');
INSERT INTO tags (name) VALUES ('after hundred');
SELECT * FROM tags WHERE id >= 100 ORDER BY id;
UPDATE tags SET id = 200 WHERE id = 100;
SELECT * FROM tags WHERE id >= 100 ORDER BY id;
INSERT INTO users (email, name) VALUES ('e@x', 'Eve') RETURNING id, created IS NOT NULL, score;
DELETE FROM tags;
"#
    ));
}

#[test]
fn ddl_and_catalog() {
    run(r#"
CREATE TABLE IF NOT EXISTS "Author" ("id" TEXT NOT NULL PRIMARY KEY, "name" TEXT, "born" DATETIME DEFAULT CURRENT_TIMESTAMP, "rating" DECIMAL DEFAULT 0);
CREATE TABLE IF NOT EXISTS "Author" ("x" INT);
CREATE TABLE "Book" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "title" TEXT NOT NULL, "authorId" TEXT NOT NULL, CONSTRAINT "Book_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "Author" ("id") ON DELETE RESTRICT ON UPDATE CASCADE);
CREATE UNIQUE INDEX "Book_title_key" ON "Book"("title");
CREATE INDEX "Book_authorId_idx" ON "Book"("authorId");
SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name;
SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name;
PRAGMA table_info("Author");
PRAGMA table_info(Book);
PRAGMA main.table_info("Book");
PRAGMA index_list("Book");
PRAGMA index_info("Book_title_key");
PRAGMA index_xinfo("Book_title_key");
PRAGMA foreign_key_list("Book");
PRAGMA foreign_keys;
INSERT INTO "Author" ("id", "name") VALUES ('a1', 'Ann');
INSERT INTO "Book" ("title", "authorId") VALUES ('T1', 'a1');
INSERT INTO "Book" ("title", "authorId") VALUES ('T2', 'missing');
DELETE FROM "Author" WHERE "id" = 'a1';
UPDATE "Author" SET "id" = 'a2' WHERE "id" = 'a1';
SELECT "authorId" FROM "Book";
ALTER TABLE "Book" ADD COLUMN "pages" INTEGER NOT NULL DEFAULT 100;
SELECT * FROM "Book";
PRAGMA table_info("Book");
SELECT sql FROM sqlite_master WHERE name = 'Book';
ALTER TABLE "Book" RENAME COLUMN "pages" TO "pageCount";
PRAGMA table_info("Book");
ALTER TABLE "Book" DROP COLUMN "pageCount";
PRAGMA table_info("Book");
ALTER TABLE "Book" RENAME TO "Volume";
SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name;
SELECT * FROM "Volume";
DROP INDEX "Book_authorId_idx";
DROP INDEX IF EXISTS "nope";
DROP TABLE "Volume";
DROP TABLE IF EXISTS "Volume";
SELECT count(*) FROM sqlite_master WHERE name = 'Volume';
CREATE TABLE t (a, b INT DEFAULT (1 + 2), c TEXT DEFAULT 'x' CHECK (c <> ''), d REAL DEFAULT -1.5, UNIQUE (a, b));
PRAGMA table_info(t);
PRAGMA index_list(t);
INSERT INTO t (a) VALUES (1);
INSERT INTO t (a, c) VALUES (2, '');
SELECT * FROM t;
"#);
}

#[test]
fn transactions() {
    run(r#"
CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT UNIQUE);
BEGIN;
INSERT INTO k (v) VALUES ('a');
SAVEPOINT s1;
INSERT INTO k (id, v) VALUES (2, 'b');
ROLLBACK TO s1;
INSERT INTO k (id, v) VALUES (2, 'c');
RELEASE s1;
INSERT INTO k (v) VALUES ('a');
COMMIT;
SELECT * FROM k ORDER BY id;
BEGIN IMMEDIATE;
DELETE FROM k;
ROLLBACK;
SELECT count(*) FROM k;
SAVEPOINT outer_sp;
INSERT INTO k (v) VALUES ('d');
RELEASE outer_sp;
SELECT v FROM k ORDER BY id;
COMMIT;
ROLLBACK;
BEGIN;
BEGIN;
END;
CREATE TABLE k2 (x);
BEGIN;
CREATE TABLE k3 (y);
INSERT INTO k3 VALUES (1);
ROLLBACK;
SELECT name FROM sqlite_master ORDER BY name;
"#);
}

#[test]
fn errors() {
    run(r#"
CREATE TABLE e (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
SELECT * FROM nope;
SELECT nope FROM e;
SELEC 1;
INSERT INTO e (v) VALUES (NULL);
INSERT INTO e (id, v) VALUES (1, 'a');
INSERT INTO e (id, v) VALUES (1, 'b');
INSERT INTO e (zz) VALUES (1);
SELECT count(*) FROM e;
CREATE TABLE e (x);
SELECT 1 FROM e WHERE count(*) > 1;
SELECT id FROM e ORDER BY 3;
"#);
}

#[test]
fn json_functions() {
    run(r#"
CREATE TABLE j (id INTEGER PRIMARY KEY, doc JSON);
INSERT INTO j (doc) VALUES ('{"theme": "dark", "n": [1, 2.50, 3], "o": {"k": "v\"q"}, "t": true, "z": null}'), ('[1, {"a": 2}]'), ('not json'), (NULL);
SELECT json(doc) FROM j WHERE json_valid(doc) ORDER BY id;
SELECT json_valid(doc) FROM j ORDER BY id;
SELECT json_extract(doc, '$.theme'), json_extract(doc, '$.n[1]'), json_extract(doc, '$.n'), json_extract(doc, '$.o.k'), json_extract(doc, '$.t'), json_extract(doc, '$.z'), json_extract(doc, '$.missing') FROM j WHERE id = 1;
SELECT json_extract(doc, '$[1].a'), json_extract(doc, '$[#-1]'), json_extract(doc, '$[0]', '$[1]') FROM j WHERE id = 2;
SELECT doc -> 'theme', doc ->> 'theme', doc -> '$.n', doc ->> '$.n[2]', doc -> 'missing' FROM j WHERE id = 1;
SELECT doc -> 1, doc ->> 0 FROM j WHERE id = 2;
SELECT id FROM j WHERE json_extract(doc, '$."theme"') = 'dark';
SELECT json_type(doc), json_type(doc, '$.n'), json_array_length(doc, '$.n') FROM j WHERE id = 1;
SELECT json('{"a" : [ 1 , 2 ] }'), json_quote('a"b'), json_quote(3);
SELECT json(doc) FROM j WHERE id = 3;
"#);
}

#[test]
fn recursive_ctes() {
    run(r#"
CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node(id), name TEXT);
INSERT INTO node VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 1, 'b'), (4, 2, 'a1'), (5, 4, 'a11'), (6, 3, 'b1');
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 10) SELECT x, x * x FROM cnt ORDER BY x;
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt LIMIT 5) SELECT sum(x), count(*) FROM cnt;
WITH RECURSIVE sub(id, depth) AS (SELECT id, 0 FROM node WHERE id = 2 UNION ALL SELECT n.id, s.depth + 1 FROM node n JOIN sub s ON n.parent = s.id) SELECT id, depth FROM sub ORDER BY id;
WITH RECURSIVE up(id, path) AS (SELECT id, name FROM node WHERE id = 5 UNION ALL SELECT n.parent, (SELECT name FROM node WHERE id = n.parent) || '/' || up.path FROM up JOIN node n ON n.id = up.id WHERE n.parent IS NOT NULL) SELECT path FROM up ORDER BY length(path) DESC LIMIT 1;
WITH RECURSIVE cyc(x) AS (SELECT 1 UNION SELECT (x % 3) + 1 FROM cyc) SELECT x FROM cyc ORDER BY x;
WITH RECURSIVE fib(a, b) AS (SELECT 0, 1 UNION ALL SELECT b, a + b FROM fib WHERE a < 100) SELECT group_concat(a, ',') FROM fib;
"#);
}

#[test]
fn window_functions() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
SELECT id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS rn FROM posts ORDER BY id;
SELECT id, views, rank() OVER (ORDER BY views DESC) AS r, dense_rank() OVER (ORDER BY views DESC) AS d FROM posts ORDER BY id;
SELECT id, sum(views) OVER (PARTITION BY user_id) AS total, sum(views) OVER (ORDER BY id) AS running, count(*) OVER () AS n FROM posts ORDER BY id;
SELECT id, avg(views) OVER (PARTITION BY user_id ORDER BY views) AS a, max(title) OVER (PARTITION BY user_id) AS m FROM posts ORDER BY id;
SELECT id, lag(views) OVER (ORDER BY id) AS prev, lead(views, 2, -1) OVER (ORDER BY id) AS next2 FROM posts ORDER BY id;
SELECT id, first_value(title) OVER (PARTITION BY user_id ORDER BY id DESC) AS f, last_value(title) OVER (PARTITION BY user_id ORDER BY id) AS l FROM posts ORDER BY id;
SELECT user_id, count(*) AS c, rank() OVER (ORDER BY count(*) DESC) AS r FROM posts GROUP BY user_id ORDER BY user_id;
SELECT posts.id, row_number() OVER (PARTITION BY posts.user_id ORDER BY posts.id) AS anon_1 FROM posts ORDER BY 1;
SELECT * FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY views DESC, id) AS rn FROM posts) WHERE rn = 1 ORDER BY id;
SELECT id FROM posts ORDER BY row_number() OVER (ORDER BY title DESC);
"#
    ));
}

#[test]
fn update_from() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
CREATE TABLE totals (user_id INTEGER PRIMARY KEY, n INT, v INT);
INSERT INTO totals (user_id, n, v) SELECT id, 0, 0 FROM users;
UPDATE totals SET n = s.c, v = s.v FROM (SELECT user_id, count(*) AS c, sum(views) AS v FROM posts GROUP BY user_id) AS s WHERE s.user_id = totals.user_id;
SELECT * FROM totals ORDER BY user_id;
UPDATE posts SET title = users.name || ': ' || posts.title FROM users WHERE users.id = posts.user_id AND users.age > 26 RETURNING posts.id, posts.title;
SELECT id, title FROM posts ORDER BY id;
UPDATE totals SET v = v + 1 FROM users u JOIN posts p ON p.user_id = u.id WHERE u.id = totals.user_id;
SELECT * FROM totals ORDER BY user_id;
"#
    ));
}

#[test]
fn date_time_functions_grid() {
    let inputs = [
        "'2024-02-29'",
        "'2024-02-29 13:45:10'",
        "'2024-02-29T13:45:10.123'",
        "'2024-02-29 13:45:10Z'",
        "'2024-02-29 13:45:10+02:00'",
        "'2024-02-29 13:45'",
        "'12:30'",
        "'12:30:45.5'",
        "2460000.5",
        "0",
        "2451545",
        "'2000-01-01 00:00:00'",
        "'1970-01-01'",
        "'1999-12-31 23:59:59.999'",
        "NULL",
        "'garbage'",
        "'2024-13-01'",
        "'2023-01-31'",
        "'2024-12-31 23:00:00'",
    ];
    let modifiers = [
        "",
        ", '+1 day'",
        ", '-3 hours'",
        ", '+90 minutes'",
        ", '+30 seconds'",
        ", '+1 month'",
        ", '-1 year'",
        ", 'start of month'",
        ", 'start of year'",
        ", 'start of day'",
        ", 'weekday 0'",
        ", 'weekday 3'",
        ", '+1.5 days'",
        ", '+1 month', 'start of month'",
        ", 'bogus'",
    ];
    let mut d = Diff::new();
    for i in inputs {
        for m in modifiers {
            d.check(
                &format!("SELECT date({i}{m}), time({i}{m}), datetime({i}{m}), julianday({i}{m}), unixepoch({i}{m})"),
                &[],
            );
        }
        d.check(
            &format!("SELECT strftime('%Y-%m-%d %H:%M:%S|%j|%w|%s|%f|%%|%d/%m', {i}), strftime('%J', {i})"),
            &[],
        );
    }
    for n in ["0", "86400", "1700000000", "1700000000.5", "-1"] {
        d.check(
            &format!("SELECT datetime({n}, 'unixepoch'), date({n}, 'unixepoch', '+1 day')"),
            &[],
        );
    }
    d.assert_clean();
}

/// Range predicates on the row id and on indexed columns use range lookups; whatever the value
/// types of the bounds and of the stored values, the rows are SQLite's.
#[test]
fn range_lookups() {
    let mut script = String::from(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, n NUMERIC, t TEXT, b BLOB, r REAL);
CREATE INDEX ix_m_n ON m (n);
CREATE INDEX ix_m_t ON m (t);
CREATE INDEX ix_m_b ON m (b);
CREATE INDEX ix_m_nt ON m (n, t);
",
    );
    let vals = [
        "NULL",
        "-5",
        "0",
        "1",
        "1.5",
        "2",
        "2.0",
        "3",
        "10",
        "'2'",
        "'10'",
        "'abc'",
        "'B'",
        "X'00'",
        "X'ff'",
        "9223372036854775807",
        "-9223372036854775808",
        "1e300",
    ];
    for (i, v) in vals.iter().enumerate() {
        let t = vals[(i * 7) % vals.len()];
        script.push_str(&format!(
            "INSERT INTO m VALUES ({}, {v}, {t}, {v}, {v});\n",
            i as i64 * 3 - 10
        ));
    }
    let bounds = [
        "NULL", "-5", "1", "1.5", "2", "'2'", "'10'", "'abc'", "X'01'", "2.5", "-1e400",
    ];
    for col in ["id", "n", "t", "b", "r"] {
        for (op, rev) in [("<", ">"), ("<=", ">="), (">", "<"), (">=", "<=")] {
            for b in bounds {
                script.push_str(&format!(
                    "SELECT id FROM m WHERE {col} {op} {b} ORDER BY id;\n"
                ));
                script.push_str(&format!(
                    "SELECT id FROM m WHERE {b} {rev} {col} ORDER BY id;\n"
                ));
            }
        }
        for (lo, hi) in [
            ("1", "3"),
            ("'2'", "'abc'"),
            ("NULL", "3"),
            ("-1e400", "1e400"),
            ("3", "1"),
        ] {
            script.push_str(&format!(
                "SELECT id FROM m WHERE {col} BETWEEN {lo} AND {hi} ORDER BY id;\n"
            ));
            script.push_str(&format!(
                "SELECT id FROM m WHERE {col} > {lo} AND {col} <= {hi} ORDER BY id;\n"
            ));
        }
    }
    script.push_str("SELECT id FROM m WHERE n = 2 AND t > '1' ORDER BY id;\n");
    script.push_str(
        "SELECT a.id, b.id FROM m a JOIN m b ON b.id > a.id AND b.id <= a.id + 6 ORDER BY 1, 2;\n",
    );
    run(&script);
}
