"""QuerySet.graph(): the same instances and relation caches as select_related /
prefetch_related, read by one native graph fetch and no SQL for the relations."""

import datetime
from decimal import Decimal

import pytest
from django.db import NotSupportedError, connection, transaction
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext

from graphapp.models import Author, Book, Chapter, Membership, Profile, Tag


@pytest.fixture
def data(schema):
    with transaction.atomic():
        for m in (Membership, Chapter, Book.tags.through, Book, Profile, Tag, Author):
            m._base_manager.all().delete()
        ada = Author.objects.create(name="ada", born=datetime.date(1815, 12, 10))
        bob = Author.objects.create(name="bob", active=False)
        Author.objects.create(name="cy")
        Profile.objects.create(author=ada, bio="mathematician")
        rust, db, orm = (Tag.objects.create(label=x) for x in ("rust", "db", "orm"))
        b1 = Book.objects.create(
            author=ada, title="notes", price=Decimal("12.50"),
            published=datetime.datetime(1843, 9, 1, 12, 30),
        )  # fmt: skip
        b2 = Book.objects.create(author=ada, title="engines", price=Decimal("3.00"))
        b3 = Book.objects.create(author=bob, title="bridges", price=Decimal("7.25"))
        b1.tags.add(rust, db)
        b3.tags.add(orm)
        for book, n in ((b1, 3), (b2, 1), (b3, 2)):
            for i in range(n, 0, -1):
                Chapter.objects.create(book=book, number=i)
        ch = Chapter.objects.get(book=b1, number=1)
        Membership.objects.create(tag=orm, chapter=ch, weight=5)
        Membership.objects.create(tag=db, chapter=ch)
        # Through rows in the opposite order of Chapter's Meta.ordering (number).
        for number in (3, 2):
            Membership.objects.create(tag=rust, chapter=Chapter.objects.get(book=b1, number=number))
    return {"ada": ada, "bob": bob}


def snapshot(authors):
    """Everything reachable through the caches, read without allowing SQL."""
    with CaptureQueriesContext(connection) as ctx:
        out = [
            (
                a.pk, a.name, a.born, a.active,
                [
                    (b.pk, b.title, b.price, b.published, b.author is a,
                     [(c.number, c.book_id) for c in b.chapter_set.all()],
                     [t.label for t in b.tags.all()])
                    for b in a.books.all()
                ],
            )
            for a in authors
        ]  # fmt: skip
    assert ctx.captured_queries == [], "the relations must come from the caches"
    return out


def test_nested_prefetch_matches_django(data):
    lookups = ("books__chapter_set", "books__tags")
    expected = snapshot(list(Author.objects.prefetch_related(*lookups)))
    with CaptureQueriesContext(connection) as ctx:
        got = Author.objects.prefetch_related(*lookups).graph()
    assert ctx.captured_queries == []  # one native fetch, no SQL
    assert snapshot(got) == expected
    assert [a.name for a in got] == ["ada", "bob", "cy"]
    ada = got[0]
    assert ada.born == datetime.date(1815, 12, 10) and ada.active is True
    assert ada.books.all()[0].price == Decimal("3.00")
    assert isinstance(ada.books.all()[1].published, datetime.datetime)


def test_select_related_and_one_to_one(data):
    books = Book.objects.select_related("author__profile").order_by("title").graph()
    with CaptureQueriesContext(connection) as ctx:
        rows = [(b.title, b.author.name, b.author.profile.bio) for b in books if b.author.name == "ada"]
        assert [b.author.name for b in books] == ["bob", "ada", "ada"]
    assert ctx.captured_queries == []
    assert rows == [("engines", "ada", "mathematician"), ("notes", "ada", "mathematician")]
    # bob has no profile: the cache says so, as select_related's does.
    bob = next(b.author for b in books if b.author.name == "bob")
    with pytest.raises(Profile.DoesNotExist):
        bob.profile
    profiles = Profile.objects.select_related("author").graph()
    assert [(p.bio, p.author.name) for p in profiles] == [("mathematician", "ada")]


def test_many_to_many_both_ways_and_custom_through(data):
    tags = Tag.objects.prefetch_related("books__author", "chapters").graph()
    with CaptureQueriesContext(connection) as ctx:
        got = {
            t.label: (
                [(b.title, b.author.name) for b in t.books.all()],
                [c.number for c in t.chapters.all()],
            )
            for t in tags
        }
    assert ctx.captured_queries == []
    assert got == {
        "db": ([("notes", "ada")], [1]),
        "orm": ([("bridges", "bob")], [1]),
        "rust": ([("notes", "ada")], [2, 3]),
    }
    expected = {
        t.label: [c.number for c in t.chapters.all()]
        for t in Tag.objects.prefetch_related("chapters")
    }
    assert {k: v[1] for k, v in got.items()} == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: Author.objects.filter(active=True),
        lambda: Author.objects.filter(name__in=["bob", "cy"]).order_by("-name"),
        lambda: Author.objects.exclude(born__isnull=True),
        lambda: Author.objects.filter(name__gte="b")[1:2],
        lambda: Author.objects.all()[:2],
        lambda: Author.objects.filter(books__title="bridges"),  # a join: pk fallback
        lambda: Author.objects.filter(name__startswith="a") | Author.objects.filter(name="cy"),
    ],
)
def test_filters_ordering_and_slices_match_sql(data, make):
    def books(authors):
        with CaptureQueriesContext(connection) as ctx:
            out = [(a.pk, a.name, [b.title for b in a.books.all()]) for a in authors]
        assert ctx.captured_queries == []
        return out

    want = books(list(make().prefetch_related("books")))
    assert books(make().prefetch_related("books").graph()) == want


def test_sees_the_open_transaction(data):
    with transaction.atomic():
        dee = Author.objects.create(name="dee")
        Book.objects.create(author=dee, title="draft", price=Decimal("1"))
        got = Author.objects.filter(name="dee").prefetch_related("books").graph()
        assert [b.title for b in got[0].books.all()] == ["draft"]
        transaction.set_rollback(True)
    assert Author.objects.filter(name="dee").graph() == []


def test_refuses_what_it_cannot_honour(data):
    with pytest.raises(NotSupportedError):
        Author.objects.prefetch_related(Prefetch("books", queryset=Book.objects.filter(title="x"))).graph()
    with pytest.raises(NotSupportedError):
        Author.objects.values("name").graph()
    with pytest.raises(NotSupportedError):
        Author.objects.prefetch_related("nope").graph()


def test_instances_have_django_state_and_fields(data):
    """The fast construction gives what Model.from_db gives."""
    got = Author.objects.prefetch_related("books").graph()
    want = list(Author.objects.prefetch_related("books"))
    for g, w in zip(got, want):
        assert type(g) is type(w) and g == w
        assert g._state.adding is False and g._state.db == w._state.db == "default"
        plain = lambda o: {k: v for k, v in o.__dict__.items() if not k.startswith("_")}  # noqa: E731
        assert plain(g) == plain(w)
        for gb, wb in zip(g.books.all(), w.books.all()):
            assert plain(gb) == plain(wb) and gb._state.adding is False
            assert gb.author is g  # the child's forward cache points at its parent


def test_cached_querysets_filter_per_instance(data):
    """The per-instance related querysets behave as Django's: further filters run SQL scoped
    to their own instance, with the same SQL as the querysets Django's prefetch caches."""
    got = Author.objects.prefetch_related("books__tags").graph()
    want = list(Author.objects.prefetch_related("books__tags"))
    for g, w in zip(got, want):
        gq, wq = g.books.all(), w.books.all()
        assert type(gq) is type(wq)
        assert str(gq.query) == str(wq.query)
        assert list(gq.filter(price__gt=5).values_list("title", flat=True)) == list(
            wq.filter(price__gt=5).values_list("title", flat=True)
        )
        assert gq.count() == wq.count() and gq.exists() == wq.exists()
        for gb, wb in zip(gq, wq):
            assert str(gb.tags.all().query) == str(wb.tags.all().query)
            assert list(gb.tags.filter(label__startswith="r")) == list(
                wb.tags.filter(label__startswith="r")
            )
    # Touching one instance's queryset (its deferred filter applied) leaves the others alone.
    ada, bob = got[0], got[1]
    str(ada.books.all().query)
    assert [b.title for b in bob.books.filter(price__gt=0)] == ["bridges"]


def test_post_init_listeners_still_run(data):
    from django.db.models.signals import post_init

    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance.name)

    post_init.connect(listener, sender=Author)
    try:
        got = Author.objects.prefetch_related("books").graph()
    finally:
        post_init.disconnect(listener, sender=Author)
    assert seen == [a.name for a in got] == ["ada", "bob", "cy"]


def test_cached_querysets_copy_and_pickle_independently(data):
    """The cached querysets share their unfiltered Query until first read; every way of
    reading or copying one gives it (or the copy) a Query of its own."""
    import copy
    import pickle

    from django.db.models.sql import Query

    got = Author.objects.prefetch_related("books").graph()
    ada, bob = got[0], got[1]
    titles = lambda qs: sorted(qs.values_list("title", flat=True))  # noqa: E731
    deep = copy.deepcopy(bob.books.all())
    shallow = copy.copy(ada.books.all())
    assert type(deep.query) is Query and titles(deep) == ["bridges"]
    assert titles(shallow) == ["engines", "notes"]
    again = pickle.loads(pickle.dumps(got))
    assert [b.title for b in again[1].books.all()] == ["bridges"]
    assert titles(again[1].books.all()) == ["bridges"]
    assert titles(again[0].books.filter(price__gt=5)) == ["notes"]
    # The originals were not touched by any of it.
    assert type(bob.books.all().query) is Query and titles(bob.books.all()) == ["bridges"]
    assert titles(ada.books.exclude(title="notes")) == ["engines"]
    cy = got[2]
    assert list(cy.books.all()) == [] and titles(cy.books.all()) == []


def test_models_built_through_from_db_get_the_same_caches(data):
    """A model with a post_init receiver goes through Model.from_db; its relation caches
    (to-one both ways, to-many) are filled as for the others."""
    from django.db.models.signals import post_init

    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(type(instance).__name__)

    for model in (Author, Profile):
        post_init.connect(listener, sender=model)
    try:
        books = Book.objects.select_related("author__profile").order_by("title").graph()
        authors = Author.objects.prefetch_related("books").select_related("profile").graph()
    finally:
        for model in (Author, Profile):
            post_init.disconnect(listener, sender=model)
    assert seen.count("Profile") == 3 and seen.count("Author") == 6
    with CaptureQueriesContext(connection) as ctx:
        ada_books = [b for b in books if b.author.name == "ada"]
        assert all(b.author.profile.author is b.author for b in ada_books)
        ada = next(a for a in authors if a.name == "ada")
        assert ada.profile.bio == "mathematician" and ada.profile.author is ada
        assert [b.title for b in ada.books.all()] == ["engines", "notes"]
        assert all(b.author is ada for b in ada.books.all())
    assert ctx.captured_queries == []
