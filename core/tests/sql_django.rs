//! Statements Django 5.2's sqlite3 backend sends (captured from its test suite on the
//! django_ormdb backend), each checked against SQLite.

mod sqldiff;

use sqldiff::Diff;

use sqldiff::run_clean as run;

/// JSONField columns carry `CHECK ((JSON_VALID(col) OR col IS NULL))`.
#[test]
fn json_valid_in_check_constraints() {
    run(r#"
CREATE TABLE "m_jsonmodel" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "value" text NOT NULL CHECK ((JSON_VALID("value") OR "value" IS NULL)), "extra" text NULL CHECK ((JSON_VALID("extra") OR "extra" IS NULL)));
INSERT INTO "m_jsonmodel" ("value", "extra") VALUES ('{"a": [1, 2]}', NULL);
INSERT INTO "m_jsonmodel" ("value", "extra") VALUES ('3', '"x"');
INSERT INTO "m_jsonmodel" ("value", "extra") VALUES ('{"a": ', NULL);
INSERT INTO "m_jsonmodel" ("value", "extra") VALUES ('[]', 'not json');
UPDATE "m_jsonmodel" SET "extra" = '{' WHERE "id" = 1;
UPDATE "m_jsonmodel" SET "extra" = '{"k": null}' WHERE "id" = 1;
SELECT "id", "value", "extra" FROM "m_jsonmodel" ORDER BY "id";
CREATE TABLE t2 (v TEXT CHECK (json_type(v) IN ('object', 'array')));
INSERT INTO t2 VALUES ('{}');
INSERT INTO t2 VALUES ('1');
SELECT v FROM t2;
"#);
}

/// `DatabaseOperations.__references_graph` (flush with cascade) asks for the tables whose
/// CREATE text references a table with a recursive CTE written without RECURSIVE.
#[test]
fn recursive_cte_without_the_recursive_keyword() {
    run(r#"
CREATE TABLE a (id INTEGER PRIMARY KEY);
CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
CREATE TABLE c (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id));
CREATE TABLE d (id INTEGER PRIMARY KEY);
WITH tables AS (SELECT 'a' name UNION SELECT sqlite_master.name FROM sqlite_master JOIN tables ON (sql LIKE '%REFERENCES ' || tables.name || '(%')) SELECT name FROM tables ORDER BY name;
WITH cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 5) SELECT x FROM cnt;
WITH x AS (SELECT id AS x FROM a) SELECT * FROM x;
WITH tables AS (SELECT name AS tables FROM sqlite_master WHERE type = 'table') SELECT tables FROM tables ORDER BY 1;
"#);
}

/// Django escapes LIKE wildcards of a field reference in CHECK constraints with nested
/// REPLACE() calls (`surname__startswith=F("name")`).
#[test]
fn replace_and_like_escape_in_check_constraints() {
    run(r#"
CREATE TABLE "p" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(100) NULL, "surname" varchar(100) NULL, CONSTRAINT "name_not_prefix" CHECK (NOT ("surname" LIKE REPLACE(REPLACE(REPLACE("name", '\', '\\'), '%', '\%'), '_', '\_') || '%' ESCAPE '\')));
INSERT INTO "p" ("name", "surname") VALUES ('Albert', NULL);
INSERT INTO "p" ("name", "surname") VALUES ('Albert', 'Alberto');
INSERT INTO "p" ("name", "surname") VALUES ('Al%', 'Alfred');
INSERT INTO "p" ("name", "surname") VALUES ('Al%', 'Al%fred');
INSERT INTO "p" ("name", "surname") VALUES ('a_b', 'axb');
INSERT INTO "p" ("name", "surname") VALUES ('a\b', 'a\bc');
SELECT "name", "surname" FROM "p" ORDER BY "id";
CREATE TABLE q (s TEXT CHECK (replace(s, 'x', '') <> '' AND replace(s, '', 'y') = s));
INSERT INTO q VALUES ('abc');
INSERT INTO q VALUES ('xxx');
INSERT INTO q VALUES (NULL);
SELECT s FROM q;
"#);
}

/// `Coalesce(Max("opened"), RawSQL("CURRENT_TIMESTAMP", []))`: the keywords as expressions.
/// The values are compared by shape (the clock moves), not by value.
#[test]
fn current_timestamp_date_and_time_as_expressions() {
    run(r#"
CREATE TABLE s (id INTEGER PRIMARY KEY, opened DATETIME);
SELECT length(COALESCE(MAX("opened"), (CURRENT_TIMESTAMP))), typeof(CURRENT_TIMESTAMP) FROM s;
SELECT length(CURRENT_DATE), length(CURRENT_TIME), substr(CURRENT_TIMESTAMP, 1, 10) = CURRENT_DATE;
"#);
}

/// `schema_editor.add_field` issues ADD COLUMN with a type and constraints; table_info,
/// sqlite_master and the column's affinity must keep them.
#[test]
fn add_column_keeps_type_and_constraints() {
    run(r#"
CREATE TABLE "a" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(255) NOT NULL);
ALTER TABLE "a" ADD COLUMN "age" integer NULL;
ALTER TABLE "a" ADD COLUMN "score" decimal(5, 2) DEFAULT 1.5 NOT NULL ;
ALTER TABLE "a" ADD COLUMN "bio" text NULL CHECK (length("bio") < 10);
PRAGMA table_info("a");
SELECT sql FROM sqlite_master WHERE name = 'a';
INSERT INTO "a" ("name", "age", "bio") VALUES ('x', '42', 'short');
INSERT INTO "a" ("name", "bio") VALUES ('y', 'far too long a bio');
SELECT "age", typeof("age"), "score", typeof("score"), "bio" FROM "a";
"#);
}

/// JSONField key lookups quote the key in the path; escapes inside the quotes are decoded
/// (`model_fields.test_jsonfield.TestQuerying.test_lookups_special_chars`).
#[test]
fn json_path_quoted_labels_with_escapes() {
    run(r#"
CREATE TABLE j (id INTEGER PRIMARY KEY, value TEXT);
INSERT INTO j (value) VALUES ('{"back\\slash": 1, "emo🤡''ji": 2, "quo\"te": 3, "a.b": 4, "\u00e9": 5}');
SELECT JSON_TYPE(value, '$."back\\slash"'), JSON_EXTRACT(value, '$."back\\slash"') FROM j;
SELECT JSON_TYPE(value, '$."emo🤡''ji"'), JSON_EXTRACT(value, '$."quo\"te"'), JSON_EXTRACT(value, '$."a.b"') FROM j;
SELECT JSON_EXTRACT(value, '$."\u00e9"'), JSON_EXTRACT(value, '$."é"'), JSON_EXTRACT(value, '$."missing"') FROM j;
SELECT id FROM j WHERE JSON_TYPE(value, '$."back\\slash"') IS NOT NULL;
"#);
}

/// `QuerySet.explain()` sends `EXPLAIN QUERY PLAN <select>` with the query's parameters. The
/// plan is ORMDB's own, so this is checked by shape, not against SQLite's text.
#[test]
fn explain_query_plan_describes_selects_without_running_them() {
    use ormdb::{Params, SqlState, Value};
    let mut d = Diff::new();
    d.script(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT, n INT); \
         CREATE INDEX a_name ON a (name); \
         INSERT INTO a (name, n) VALUES ('x', 1), ('y', 2);",
    );
    let details = |d: &mut Diff, sql: &str, params: Params| -> Vec<String> {
        let r = d.s.execute(sql, &params).expect(sql);
        assert_eq!(r.columns, ["id", "parent", "notused", "detail"]);
        sqldiff::plan_details(&r.rows)
    };
    let p = Params::Positional(vec![Value::Integer(1)]);
    assert_eq!(
        details(&mut d, "EXPLAIN QUERY PLAN SELECT * FROM a WHERE id = ?", p),
        ["SEARCH a USING INTEGER PRIMARY KEY (rowid=?)"]
    );
    let p = Params::Positional(vec![Value::Text("x".into())]);
    let plan = details(
        &mut d,
        "EXPLAIN QUERY PLAN SELECT n FROM a WHERE name = ? ORDER BY n",
        p,
    );
    assert_eq!(
        plan,
        [
            "SEARCH a USING INDEX a_name (key=?)",
            "USE TEMP B-TREE FOR ORDER BY"
        ]
    );
    let plan = details(
        &mut d,
        "EXPLAIN QUERY PLAN SELECT n, count(*) FROM a GROUP BY n UNION ALL SELECT 1, 2",
        Params::None,
    );
    assert_eq!(plan[0], "COMPOUND QUERY");
    assert!(plan.contains(&"SCAN a".to_string()), "{plan:?}");
    assert!(
        plan.contains(&"USE TEMP B-TREE FOR GROUP BY".to_string()),
        "{plan:?}"
    );
    // The statement is compiled (a missing table is still an error) but not run.
    let err =
        d.s.execute("EXPLAIN QUERY PLAN SELECT * FROM missing", &Params::None)
            .unwrap_err();
    assert_eq!(err.state, SqlState::UndefinedTable);
    for sql in ["EXPLAIN SELECT 1", "EXPLAIN QUERY PLAN DELETE FROM a"] {
        let err = d.s.execute(sql, &Params::None).unwrap_err();
        assert_eq!(err.state, SqlState::FeatureNotSupported, "{sql}");
    }
    let r =
        d.s.execute("SELECT count(*) FROM a", &Params::None)
            .unwrap();
    assert_eq!(r.rows, vec![vec![Value::Integer(2)]]);
}

/// `db_default=Pi()` / math functions in DEFAULT and CHECK expressions (SQLite built with
/// SQLITE_ENABLE_MATH_FUNCTIONS accepts them there like any deterministic function).
#[test]
fn math_functions_in_default_and_check() {
    run(r#"
CREATE TABLE "m_pi" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "v" real DEFAULT (PI()) NOT NULL, "r" real NULL CHECK ("r" IS NULL OR sqrt(abs("r")) < 3), "f" integer DEFAULT (pow(2, 3) + exp(0)), "g" real DEFAULT (-pi() / 2));
INSERT INTO "m_pi" ("r") VALUES (4.0);
INSERT INTO "m_pi" ("r") VALUES (-8);
INSERT INTO "m_pi" ("r") VALUES (9);
INSERT INTO "m_pi" DEFAULT VALUES;
SELECT "id", "v", typeof("v"), "r", "f", typeof("f"), "g" FROM "m_pi" ORDER BY "id";
CREATE TABLE "m_bad" ("v" real DEFAULT (pi(1)));
"#);
}

/// A JSONField key transform in a CHECK constraint or an index expression
/// (`Q(data__key="x")`, `Index(KeyTextTransform(...))`) stores a CASE over JSON_TYPE /
/// JSON_EXTRACT.
#[test]
fn case_and_json_extract_in_check_and_index_expressions() {
    run(r#"
CREATE TABLE "j" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "data" text NULL CHECK ((JSON_VALID("data") OR "data" IS NULL)), CONSTRAINT "data_key" CHECK ((CASE WHEN JSON_TYPE("data", '$."k"') IN ('true', 'false', 'null') THEN JSON_TYPE("data", '$."k"') ELSE JSON_EXTRACT("data", '$."k"') END = 'ok' OR "data" IS NULL)));
INSERT INTO "j" ("data") VALUES ('{"k": "ok"}');
INSERT INTO "j" ("data") VALUES ('{"k": "no"}');
INSERT INTO "j" ("data") VALUES ('{"k": null}');
INSERT INTO "j" ("data") VALUES (NULL);
INSERT INTO "j" ("data") VALUES ('{"x": 1}');
CREATE INDEX "j_k_idx" ON "j" ((CASE WHEN JSON_TYPE("data", '$."k"') IN ('true', 'false', 'null') THEN JSON_TYPE("data", '$."k"') ELSE JSON_EXTRACT("data", '$."k"') END));
CREATE TABLE "c" ("id" integer PRIMARY KEY, "n" integer, "s" text DEFAULT (CASE WHEN 1 > 2 THEN 'a' END), CHECK (CASE "n" WHEN 1 THEN 'one' WHEN 2 THEN abs(-9223372036854775807 - 1) WHEN NULL THEN 'never' ELSE 'other' END <> 'bad'), CHECK (CASE WHEN "n" > 10 THEN 0 ELSE 1 END));
INSERT INTO "c" ("id", "n") VALUES (1, 1);
INSERT INTO "c" ("id", "n") VALUES (2, 3);
INSERT INTO "c" ("id", "n") VALUES (3, NULL);
INSERT INTO "c" ("id", "n") VALUES (4, 11);
INSERT INTO "c" ("id", "n") VALUES (5, 2);
SELECT "id", "n", "s", typeof("s") FROM "c" ORDER BY "id";
SELECT "id", "data" FROM "j" ORDER BY "id";
"#);
}

/// `Index(Cast("weight", FloatField()))`, a DecimalField's `db_default` and a cast key
/// transform store CAST in index and DEFAULT expressions.
#[test]
fn cast_in_default_check_and_index_expressions() {
    run(r#"
CREATE TABLE "w" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "weight" integer NOT NULL, "d" decimal NOT NULL DEFAULT (CAST('1.2' AS NUMERIC)), "t" text DEFAULT (CAST(12 AS TEXT)), "i" integer DEFAULT (CAST('7abc' AS INTEGER)), "r" real DEFAULT (CAST('2' AS REAL)), "b" blob DEFAULT (CAST('hi' AS BLOB)), CHECK (abs(CAST("weight" AS REAL)) < 1000));
CREATE INDEX "w_cast" ON "w" ((CAST("weight" AS real)));
CREATE INDEX "w_case_cast" ON "w" ((CAST((CASE WHEN "weight" > 5 THEN '10' ELSE "weight" END) AS INTEGER)));
INSERT INTO "w" ("weight") VALUES (3);
INSERT INTO "w" ("weight") VALUES (9);
INSERT INTO "w" ("weight") VALUES (5000);
INSERT INTO "w" ("weight", "d") VALUES (4, CAST('3' AS NUMERIC));
SELECT "id", "weight", "d", typeof("d"), "t", typeof("t"), "i", "r", typeof("r"), "b", typeof("b") FROM "w" ORDER BY "id";
"#);
}

/// A CAST compared in a stored expression would need SQLite's affinity of the cast type,
/// which stored expressions do not apply: refused rather than answered differently.
#[test]
fn cast_compared_in_a_stored_expression_is_refused() {
    let mut d = Diff::new();
    d.script(r#"CREATE TABLE "x" ("v" integer CHECK (CAST("v" AS TEXT) = 5));"#);
    assert!(d.mismatches.is_empty(), "{}", d.report());
    assert_eq!(d.unsupported.len(), 1, "{}", d.report());
}
