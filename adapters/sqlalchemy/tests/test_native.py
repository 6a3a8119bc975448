"""graph_fetch: a query's eager-load tree as one native graph fetch, on data written by the ORM."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from sqlalchemy_ormdb import graph_fetch, graph_fetch_spec
from models import Comment, Post, Tag, User


def _shape(users):
    return [
        (
            u.name,
            [
                (p.title, [c.body for c in p.comments], sorted(t.label for t in p.tags))
                for p in u.posts
            ],
        )
        for u in users
    ]


TREE = (
    select(User)
    .order_by(User.id)
    .options(
        selectinload(User.posts).selectinload(Post.comments),
        selectinload(User.posts).selectinload(Post.tags),
    )
)


def test_spec_from_loader_options():
    spec = graph_fetch_spec(TREE)
    assert spec["root"] == "users"
    assert spec["order"] == [{"field": "id", "desc": False}]
    (posts,) = spec["includes"]
    assert posts["relation"] == "posts" and posts["alias"] == "posts"
    assert [i["relation"] for i in posts["includes"]] == ["comments", "tags"]
    to_one = graph_fetch_spec(
        select(Comment).options(joinedload(Comment.post).joinedload(Post.author))
    )
    assert to_one["includes"][0]["relation"] == "post"
    assert to_one["includes"][0]["includes"][0]["relation"] == "author"


def test_instances_match_orm_loading(blog):
    with Session(blog) as s:
        expected = _shape(s.scalars(TREE).all())
    statements: list[str] = []

    @event.listens_for(blog, "before_cursor_execute")
    def _track(conn, cursor, statement, *args):
        statements.append(statement)

    with Session(blog) as s:
        users = graph_fetch(s, TREE)
        assert _shape(users) == expected
        assert statements == [], "no SQL: one native fetch, relationships populated"
        assert users[0].posts[0].author is users[0] or users[0].posts[0].author.name == "ada"
        # Instances are ordinary persistent objects: changes flush through SQL.
        users[1].email = "bob@example.com"
        s.commit()
        assert s.scalar(select(User.email).where(User.name == "bob")) == "bob@example.com"


def test_dicts_match_sql(blog):
    with Session(blog) as s:
        rows = graph_fetch(s, TREE, as_dicts=True)
        assert [u["name"] for u in rows] == ["ada", "bob"]
        assert [c["body"] for c in rows[0]["posts"][0]["comments"]] == ["nice", "meh"]
        assert sorted(t["label"] for t in rows[0]["posts"][0]["tags"]) == ["python", "rust"]
        joined = s.execute(
            select(User.name, Post.title, Comment.body).join(User.posts).join(Post.comments)
        ).all()
        nested = [
            (u["name"], p["title"], c["body"])
            for u in rows
            for p in u["posts"]
            for c in p["comments"]
        ]
        assert sorted(nested) == sorted(tuple(r) for r in joined)


def test_filter_order_limit(blog):
    with Session(blog) as s:
        q = (
            select(Post)
            .where((Post.title != "second") & Post.author_id.in_([1, 2]))
            .order_by(Post.title.desc())
            .limit(1)
            .options(selectinload(Post.comments))
        )
        (post,) = graph_fetch(s, q)
        assert post.title == "third" and [c.body for c in post.comments] == ["ok"]
        assert [
            p.title
            for p in graph_fetch(s, select(Post).where(Post.title.like("%ir%")).order_by(Post.id))
        ] == [
            "first",
            "third",
        ]
        users = graph_fetch(s, select(User).where(User.email.is_(None)))
        assert [u.name for u in users] == ["bob"]


def test_many_to_many_from_the_tag_side(blog):
    with Session(blog) as s:
        tags = graph_fetch(s, select(Tag).order_by(Tag.label).options(selectinload(Tag.posts)))
        assert [(t.label, sorted(p.title for p in t.posts)) for t in tags] == [
            ("python", ["first"]),
            ("rust", ["first", "second"]),
        ]


def test_refuses_what_does_not_translate(blog):
    with Session(blog) as s:
        with pytest.raises(NotImplementedError, match="WHERE"):
            graph_fetch(s, select(User).where(func.lower(User.name) == "ada"))
        with pytest.raises(NotImplementedError, match="loader strategy"):
            graph_fetch(s, select(User).options(lazyload(User.posts)))
        with pytest.raises(NotImplementedError, match="one mapped entity"):
            graph_fetch(s, select(User.name))
        with pytest.raises(NotImplementedError, match="JOIN"):
            graph_fetch(s, select(User).join(User.posts))


def test_pending_changes_refused(blog):
    with Session(blog) as s:
        s.add(User(name="cy"))
        with pytest.raises(RuntimeError, match="commit"):
            graph_fetch(s, select(User))
