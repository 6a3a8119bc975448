"""Reflection through ORMDB's emulated sqlite_master and PRAGMAs."""

from __future__ import annotations

from sqlalchemy import Integer, MetaData, String, Table, inspect, select


def test_table_names_and_columns(engine):
    insp = inspect(engine)
    assert sorted(insp.get_table_names()) == ["comments", "post_tags", "posts", "tags", "users"]
    cols = {c["name"]: c for c in insp.get_columns("users")}
    assert list(cols) == ["id", "name", "email"]
    assert isinstance(cols["id"]["type"], Integer)
    assert isinstance(cols["name"]["type"], String) and cols["name"]["type"].length == 50
    assert cols["name"]["nullable"] is False and cols["email"]["nullable"] is True


def test_keys_and_constraints(engine):
    insp = inspect(engine)
    assert insp.get_pk_constraint("post_tags")["constrained_columns"] == ["post_id", "tag_id"]
    fks = insp.get_foreign_keys("posts")
    assert [
        (f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in fks
    ] == [(["author_id"], "users", ["id"])]
    pt = {
        f["referred_table"]: f["options"].get("ondelete")
        for f in insp.get_foreign_keys("post_tags")
    }
    assert pt == {"posts": "CASCADE", "tags": "CASCADE"}
    uqs = insp.get_unique_constraints("tags")
    assert [(u["name"], u["column_names"]) for u in uqs] == [("uq_tags_label", ["label"])]
    # ORMDB's own foreign key indexes are not reported (migration tools would drop them).
    assert all(not i["name"].startswith("ormdb_fk") for i in insp.get_indexes("posts"))


def test_autoload_table_and_query(blog):
    md = MetaData()
    users = Table("users", md, autoload_with=blog)
    posts = Table("posts", md, autoload_with=blog)
    assert posts.c.author_id.references(users.c.id)
    with blog.connect() as c:
        rows = c.execute(
            select(users.c.name, posts.c.title).join_from(users, posts).order_by(posts.c.id)
        ).all()
    assert rows == [("ada", "first"), ("ada", "second"), ("bob", "third")]


def test_reflect_all(engine):
    md = MetaData()
    md.reflect(engine)
    assert set(md.tables) == {"users", "posts", "comments", "tags", "post_tags"}
