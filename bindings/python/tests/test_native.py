"""The native API: graph fetch, EXPLAIN, mutations, aggregates, metrics, change streams."""

import json

import pytest

import ormdb

NESTED = {
    "root": "users",
    "order": [{"field": "id"}],
    "includes": [{"relation": "posts", "includes": [{"relation": "comments"}]}],
}


def test_fetch_nested_to_many(blog):
    users = blog.fetch(NESTED)
    assert [u["name"] for u in users] == ["ada", "bob"]
    ada = users[0]
    assert [p["title"] for p in ada["posts"]] == ["first", "second"]
    assert [c["body"] for c in ada["posts"][0]["comments"]] == ["nice", "meh"]
    assert ada["posts"][1]["comments"] == []


def test_fetch_to_one_is_a_dict_and_json_string_works(blog):
    posts = blog.fetch(json.dumps({"root": "posts", "includes": [{"relation": "author"}]}))
    assert {p["title"]: p["author"]["name"] for p in posts} == {
        "first": "ada",
        "second": "ada",
        "third": "bob",
    }


def test_fetch_matches_sql(blog):
    users = blog.fetch(NESTED)
    sql = blog.execute(
        "SELECT u.name, p.title, c.body FROM users u JOIN posts p ON p.author_id = u.id "
        "JOIN comments c ON c.post_id = p.id ORDER BY c.id"
    ).fetchall()
    nested = [
        (u["name"], p["title"], c["body"])
        for u in users
        for p in u["posts"]
        for c in p["comments"]
    ]
    assert sorted(nested) == sorted(sql)


def test_fetch_raw_pagination_and_stats(blog):
    graph = {"root": "posts", "order": [{"field": "id"}], "page": {"limit": 2}}
    page = blog.fetch_raw(graph)
    assert [p["id"] for p in page["data"]] == [10, 11]
    assert isinstance(page["next_cursor"], str)
    assert page["stats"]["lookups"] >= 1
    graph["page"]["after"] = page["next_cursor"]
    page2 = blog.fetch_raw(graph)
    assert [p["id"] for p in page2["data"]] == [12]
    assert page2["next_cursor"] is None


def test_fetch_sees_own_transaction_not_others(blog, tmp_path):
    blog.execute("INSERT INTO users (id, name) VALUES (3, 'cy')")
    assert blog.in_transaction
    # The open transaction's own insert is visible to its fetch, as to its SELECTs.
    assert len(blog.fetch({"root": "users"})) == 3
    blog.rollback()
    assert len(blog.fetch({"root": "users"})) == 2
    blog.execute("INSERT INTO users (id, name) VALUES (3, 'cy')")
    blog.commit()
    assert len(blog.fetch({"root": "users"})) == 3


def test_fetch_does_not_see_another_connections_uncommitted_rows(tmp_path):
    path = str(tmp_path / "db")
    a, b = ormdb.connect(path), ormdb.connect(path)
    a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    a.commit()
    a.execute("INSERT INTO t (id) VALUES (1)")
    assert b.fetch({"root": "t"}) == []
    a.commit()
    assert b.fetch({"root": "t"}) == [{"id": 1}]
    a.close()
    b.close()


def test_relations_name_the_includes(blog):
    rels = {(r["from"], r["name"]): r for r in blog.relations()}
    author = rels[("posts", "author")]
    assert (author["kind"], author["to"], author["forward"]) == ("many_to_one", "users", True)
    assert author["fk_fields"] == ["author_id"]
    inverse = rels[("users", "posts")]
    assert (inverse["kind"], inverse["to"], inverse["forward"]) == ("one_to_many", "posts", False)
    assert inverse["fk_entity"] == "posts" and inverse["far_fk_fields"] == []


def test_blobs_come_back_as_bytes(conn):
    conn.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, data BLOB)")
    conn.execute("INSERT INTO files (data) VALUES (?)", (b"\x00\x01",))
    conn.commit()
    assert conn.fetch({"root": "files"}) == [{"id": 1, "data": b"\x00\x01"}]


def test_explain(blog):
    text = blog.explain({"root": "posts", "includes": [{"relation": "author"}]})
    assert "root posts" in text and "include author" in text
    assert "actual" not in text
    analyzed = blog.explain(NESTED, analyze=True)
    assert "actual" in analyzed


def test_mutate_and_aggregate(blog):
    r = blog.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"name": "cy"}, {"name": "dee"}]}}]})
    assert r["ops"][0]["affected"] == 2
    assert len(r["ops"][0]["ids"]) == 2
    assert blog.execute("SELECT count(*) FROM users").fetchone() == (4,)
    agg = blog.aggregate(
        {"entity": "posts", "group_by": ["author_id"], "measures": [{"func": "count"}]}
    )
    assert agg["rows"] == [[1, 2], [2, 1]]
    with pytest.raises(ormdb.IntegrityError):
        blog.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"name": "ada"}]}}]})


def test_metrics(blog):
    blog.fetch(NESTED)
    text = blog.metrics()
    assert "# TYPE ormdb_commits_total counter" in text
    assert "ormdb_commits_total" in text


def test_subscribe(blog):
    sub = blog.subscribe(["users"])
    assert sub.next(timeout=0.05) is None
    blog.execute("INSERT INTO users (id, name) VALUES (5, 'eve')")
    blog.execute("INSERT INTO posts (id, author_id, title) VALUES (50, 1, 'x')")
    blog.commit()
    change = sub.next(timeout=5)
    assert change is not None
    assert [(e["entity"], e["kind"], e["values"]["name"]) for e in change["entities"]] == [
        ("users", "insert", "eve")
    ]
    assert change["token"] == sub.position
    blog.execute("UPDATE users SET name = 'EVE' WHERE id = 5")
    blog.commit()
    upd = next(iter(sub))
    assert upd["entities"][0]["kind"] == "update"
    assert upd["entities"][0]["changed"] == ["name"]
    sub.close()
    with pytest.raises(ormdb.ProgrammingError):
        sub.next(timeout=0)


@pytest.mark.parametrize(
    "graph,cls",
    [
        ("{not json", ormdb.ProgrammingError),
        ({"root": "nope"}, ormdb.OperationalError),
        ({"root": "users", "includes": [{"relation": "nope"}]}, ormdb.OperationalError),
        ({"root": "users", "bogus": 1}, ormdb.ProgrammingError),
        ({"root": "users", "select": ["nope"]}, ormdb.OperationalError),
        ({"root": 5}, ormdb.ProgrammingError),
        ({"root": "users", "x": object()}, ormdb.ProgrammingError),
        (42, ormdb.ProgrammingError),
    ],
)
def test_bad_graphs_raise_clear_errors(blog, graph, cls):
    with pytest.raises(cls) as ei:
        blog.fetch(graph)
    assert str(ei.value)
    with pytest.raises(ormdb.Error):
        blog.explain(graph)


def test_bad_mutations_and_aggregates(blog):
    with pytest.raises(ormdb.ProgrammingError):
        blog.mutate("[]")
    with pytest.raises(ormdb.OperationalError):
        blog.mutate({"ops": [{"insert": {"entity": "nope", "rows": [{}]}}]})
    with pytest.raises(ormdb.ProgrammingError):
        blog.aggregate({"entity": "posts"})
    with pytest.raises(ormdb.OperationalError):
        blog.aggregate({"entity": "posts", "measures": [{"func": "sum", "field": "nope"}]})


def test_budget_exceeded_is_operational_error(blog):
    with pytest.raises(ormdb.OperationalError) as ei:
        blog.fetch({"root": "posts", "budget": {"max_rows": 1}})
    assert ei.value.sqlstate == "54000"
