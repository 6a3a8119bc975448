"""Connection.fetch_objects: a graph fetch building the caller's objects (the Django backend's
.graph() path) instead of nested dicts."""

import pytest


class State:
    adding = True
    db = None


class User:
    pass


class Post:
    pass


class Comment:
    pass


def plan(cls, columns, attnames=None, **extra):
    return {"cls": cls, "columns": columns, "attnames": attnames or columns, **extra}


def test_objects_with_to_many_to_one_and_caches(blog):
    attached = []

    def attach(parent, objs):
        attached.append((parent, objs))
        parent.__dict__.setdefault("_many", {})[type(objs[0]).__name__ if objs else "-"] = objs

    users = blog.fetch_objects(
        {
            "root": "users",
            "order": [{"field": "id"}],
            "includes": [
                {"relation": "posts", "alias": "p", "order": [{"field": "id"}],
                 "includes": [{"relation": "comments", "alias": "c", "order": [{"field": "id"}]}]}
            ],
        },  # fmt: skip
        plan(
            User, ["id", "name"], ["pk", "label"], kind="root",
            converters=[None, str.upper],
            includes=[
                plan(Post, ["id", "author_id", "title"], kind="to_many", key="p",
                     child_cache="author", attach=attach,
                     includes=[plan(Comment, ["id", "body", "missing"], kind="to_many", key="c",
                                    attach=attach)])
            ],
        ),  # fmt: skip
        State,
        "main",
    )
    assert [type(u) for u in users] == [User, User]
    ada, bob = users
    assert (ada.pk, ada.label, bob.label) == (1, "ADA", "BOB")
    assert type(ada._state) is State and ada._state.adding is False and ada._state.db == "main"
    posts = ada._many["Post"]
    assert [(p.id, p.title) for p in posts] == [(10, "first"), (11, "second")]
    # The parent in each child's cache, not a copy of it.
    assert all(p._state.fields_cache["author"] is ada for p in posts)
    assert [(c.body, c.missing) for c in posts[0]._many["Comment"]] == [("nice", None), ("meh", None)]
    assert posts[1]._many == {"-": []}
    assert "fields_cache" not in vars(ada._state)  # created only when something is cached
    # Every parent gets its call, in order, even with no children.
    assert [p.__class__.__name__ for p, _ in attached].count("User") == 2

    posts = blog.fetch_objects(
        {"root": "posts", "order": [{"field": "id"}],
         "includes": [{"relation": "author", "alias": "a"}]},
        plan(Post, ["id", "title"], kind="root", includes=[
            plan(User, ["id", "name"], kind="to_one", key="a", cache="author", back="post")]),
        State,
        "main",
    )  # fmt: skip
    first, second, third = posts
    author = first._state.fields_cache["author"]
    assert type(author) is User and author.name == "ada"
    assert author._state.fields_cache["post"] is first
    # A row reached twice is two objects, as with fetch().
    assert second._state.fields_cache["author"] is not author


def test_from_db_and_join_tables(conn):
    conn.executescript(
        """
        CREATE TABLE tag (id INTEGER PRIMARY KEY, label TEXT);
        CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE item_tag (id INTEGER PRIMARY KEY, weight INT,
            item_id INTEGER NOT NULL REFERENCES item(id),
            tag_id INTEGER NOT NULL REFERENCES tag(id));
        INSERT INTO tag VALUES (1, 'a'), (2, 'b');
        INSERT INTO item VALUES (1, 'x'), (2, 'y');
        INSERT INTO item_tag VALUES (1, 5, 1, 2), (2, 6, 1, 1);
        """
    )
    rels = {(r["from"], tuple(r["fk_fields"]), r["forward"]): r["name"] for r in conn.relations()}
    to_through = rels[("item", ("item_id",), False)]
    to_tag = rels[("item_tag", ("tag_id",), True)]
    made = []

    def from_db(values):
        obj = User()
        obj.values = values
        obj._state = State()
        made.append(values)
        return obj

    got = {}
    items = conn.fetch_objects(
        {"root": "item", "order": [{"field": "id"}],
         "includes": [{"relation": to_through, "alias": "t", "order": [{"field": "weight"}],
                       "includes": [{"relation": to_tag, "alias": "t"}]}]},
        plan(Post, ["id", "name"], kind="root", includes=[
            {"kind": "through", "key": "t", "cls": Comment, "columns": [], "attnames": [],
             "attach": lambda p, objs: got.setdefault(p.name, [o.values for o in objs]),
             "includes": [plan(Comment, ["id", "label"], kind="rows", key="t",
                               from_db=from_db)]}]),
        State,
        "db",
    )  # fmt: skip
    assert [i.name for i in items] == ["x", "y"]
    assert got == {"x": [[2, "b"], [1, "a"]], "y": []}
    assert made == [[2, "b"], [1, "a"]]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"cls": User, "columns": ["id"], "attnames": ["id"]}, "'kind' is missing"),
        ({"kind": "sideways", "cls": User, "columns": [], "attnames": []}, "unknown kind"),
        ({"kind": "root", "cls": User, "columns": ["id"], "attnames": []}, "differ in length"),
        ({"kind": "root", "cls": User, "columns": ["id"], "attnames": ["id"],
          "converters": []}, "differ in length"),
        ({"kind": "to_one", "key": "a", "cache": "c", "cls": User, "columns": [],
          "attnames": []}, "outermost plan"),
        ({"kind": "root", "cls": User, "columns": [], "attnames": [],
          "includes": [{"kind": "to_many", "key": "p", "cls": Post, "columns": [],
                        "attnames": []}]}, "'attach' is missing"),
        ({"kind": "root", "cls": User, "columns": [], "attnames": [],
          "includes": [{"kind": "rows", "key": "p", "cls": Post, "columns": [],
                        "attnames": []}]}, "'rows' only under 'through'"),
        ({"kind": "root", "cls": User, "columns": [], "attnames": [],
          "includes": [{"kind": "through", "key": "p", "attach": print, "cls": Post,
                        "columns": [], "attnames": []}]}, "exactly one include"),
        ({"kind": "root", "cls": User, "columns": [1], "attnames": ["id"]}, "str|PyString"),
        ("not a dict", "must be a dict"),
    ],
)  # fmt: skip
def test_bad_plans_are_type_errors(blog, bad, message):
    with pytest.raises(TypeError, match=message):
        blog.fetch_objects({"root": "users"}, bad, State, "db")


def test_errors_from_callables_propagate(blog):
    def boom(v):
        raise ValueError(f"cannot convert {v!r}")

    with pytest.raises(ValueError, match="cannot convert 'ada'"):
        blog.fetch_objects(
            {"root": "users", "order": [{"field": "id"}]},
            plan(User, ["name"], kind="root", converters=[boom]),
            State,
            "db",
        )
