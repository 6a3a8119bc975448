"""``QuerySet.graph()``: a queryset and its select_related / prefetch_related tree evaluated
as one native ORMDB graph fetch instead of one SQL query per prefetch level.

    class Author(models.Model):
        objects = GraphManager()

    authors = Author.objects.filter(active=True).prefetch_related("books__chapters").graph()

The result is a list of model instances whose relation caches are filled exactly as
select_related (to-one caches) and prefetch_related (``_prefetched_objects_cache``) fill them,
so ``author.books.all()`` and ``book.author`` run no query.

Relations are matched to the catalog's relations by their foreign key columns (the binding's
``Connection.relations()``), never by guessing names. The root filter, ordering and slicing are
translated into the fetch when they are plain comparisons on the root's own columns; any other
queryset (joins, annotations, expressions, distinct, ...) first reads its primary keys with one
SQL query and fetches the graph for exactly those rows, in the queryset's order.
Prefetch objects with a custom queryset or ``to_attr`` are refused (NotSupportedError):
``.graph()`` never silently drops what the queryset asked for.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import gc
import uuid
from typing import Any

from django.db import NotSupportedError, connections, models
from django.db.models import Prefetch, signals
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.fields.related import ForeignObjectRel
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.sql import Query
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from django.db.models.sql.where import AND, OR, WhereNode

_new = object.__new__

_CMP = {
    Exact: "eq",
    GreaterThan: "gt",
    GreaterThanOrEqual: "ge",
    LessThan: "lt",
    LessThanOrEqual: "le",
}


class _Untranslatable(Exception):
    """The root queryset's filter or ordering has no graph fetch equivalent: read the primary
    keys with SQL instead."""


def _relation_index(conn) -> dict:
    """(from, fk_entity, fk_fields, far_fk_fields, forward) -> relation name."""
    index = {}
    for r in conn.relations():
        key = (
            r["from"].lower(),
            r["fk_entity"].lower(),
            tuple(f.lower() for f in r["fk_fields"]),
            tuple(f.lower() for f in r["far_fk_fields"]),
            r["forward"],
        )
        index[key] = r["name"]
    return index


def _find(index, from_table, fk_table, fk_cols, far_cols, forward, what):
    key = (
        from_table.lower(),
        fk_table.lower(),
        tuple(c.lower() for c in fk_cols),
        tuple(c.lower() for c in far_cols),
        forward,
    )
    name = index.get(key)
    if name is None:
        raise NotSupportedError(
            f".graph(): no ORMDB relation for {what} (foreign key {fk_table}"
            f"({', '.join(fk_cols)})); is the foreign key declared in the table?"
        )
    return name


def _plain(value: Any) -> Any:
    """A filter literal in the form ORMDB stores Django values, or _Untranslatable."""
    if value is None or isinstance(value, (int, float, str)):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    if isinstance(value, (datetime.date, datetime.time, decimal.Decimal)):
        return str(value)
    if isinstance(value, uuid.UUID):
        return value.hex  # Django stores UUIDs as 32 hex digits on SQLite
    raise _Untranslatable


def _order_of(model, ordering) -> list[dict]:
    out = []
    for item in ordering:
        if not isinstance(item, str) or item == "?" or "__" in item:
            raise _Untranslatable
        desc = item.startswith("-")
        name = item.lstrip("-+")
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        if not getattr(field, "concrete", False) or field.model is not model:
            raise _Untranslatable
        out.append({"field": field.column, "desc": desc})
    return out


def _check_model(model) -> None:
    # A multi-table inheritance child has fields stored in its parents' tables, which one
    # entity of the fetch does not hold.
    if model._meta.concrete_model._meta.parents:
        raise NotSupportedError(
            f".graph(): {model.__name__} uses multi-table inheritance, which is not supported"
        )


def _python_order(model, objs: list) -> list:
    """Sorts instances by the model's Meta.ordering (plain fields only), as the SQL of
    Django's prefetch would; used where the fetch cannot order (a custom through table)."""
    for item in reversed(model._meta.ordering or []):
        if not isinstance(item, str) or "__" in item or item == "?":
            continue
        name = item.lstrip("-+")
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        attname = field.attname
        # SQLite orders NULLs first ascending (and last descending).
        objs.sort(
            key=lambda o: (getattr(o, attname) is not None, getattr(o, attname)),
            reverse=item.startswith("-"),
        )
    return objs


class _Node:
    """One include of the fetch: how to read it and where to put it."""

    def __init__(self, model, kind, attach, path):
        _check_model(model)
        self.model = model
        self.kind = kind  # "to_one", "to_many" or "m2m_through"
        self.attach = attach  # the Django field or relation object
        self.path = path
        self.alias = "_g_" + path.replace("__", "_")
        self.children: dict[str, _Node] = {}
        self.spec: dict = {}


class _Planner:
    def __init__(self, conn, model):
        self.index = _relation_index(conn)
        self.root = _Node(model, "root", None, "")

    def add_path(self, path: str, only_to_one: bool = False):
        node = self.root
        parts = path.split("__")
        for i, part in enumerate(parts):
            sub = "__".join(parts[: i + 1])
            if part not in node.children:
                node.children[part] = self._child(node, part, sub)
            node = node.children[part]
            if only_to_one and node.kind != "to_one":
                raise NotSupportedError(f"select_related('{sub}') is not a to-one relation")

    def _child(self, parent: _Node, part: str, path: str) -> _Node:
        model = parent.model
        try:
            field = model._meta.get_field(part)
        except Exception:
            # A reverse relation is reachable by its accessor name (say "book_set").
            field = next(
                (
                    r
                    for r in model._meta.related_objects
                    if r.get_accessor_name() == part
                ),
                None,
            )
            if field is None:
                raise NotSupportedError(f".graph(): {model.__name__} has no relation '{part}'")
        table = model._meta.db_table
        if isinstance(field, ForeignObjectRel) and not field.many_to_many:
            # Reverse foreign key or reverse one-to-one: the child table holds the key.
            fk = field.field
            if len(fk.local_related_fields) != 1:
                raise NotSupportedError(".graph(): composite foreign keys are not supported")
            child = field.related_model
            name = _find(
                self.index, table, child._meta.db_table, [fk.column], [], False, path
            )
            node = _Node(child, "to_one" if field.one_to_one else "to_many", field, path)
            node.spec = {"relation": name}
        elif field.many_to_many:
            forward = not isinstance(field, ForeignObjectRel)
            m2m = field if forward else field.field
            through = m2m.remote_field.through
            src, dst = m2m.m2m_field_name(), m2m.m2m_reverse_field_name()
            if not forward:
                src, dst = dst, src
            src_col = through._meta.get_field(src).column
            dst_col = through._meta.get_field(dst).column
            target = field.related_model
            node = _Node(target, "to_many", field, path)
            key = (
                table.lower(),
                through._meta.db_table.lower(),
                (src_col.lower(),),
                (dst_col.lower(),),
                False,
            )
            name = self.index.get(key)
            if name is not None:
                node.spec = {"relation": name}
            else:
                # A through table with more columns is no join entity for the catalog:
                # include it, then its foreign key to the target.
                to_through = _find(
                    self.index, table, through._meta.db_table, [src_col], [], False, path
                )
                to_target = _find(
                    self.index,
                    through._meta.db_table,
                    through._meta.db_table,
                    [dst_col],
                    [],
                    True,
                    path,
                )
                node.kind = "m2m_through"
                node.spec = {"relation": to_through}
                node.through_relation = to_target
        elif field.is_relation and (field.many_to_one or field.one_to_one):
            if len(field.local_related_fields) != 1:
                raise NotSupportedError(".graph(): composite foreign keys are not supported")
            name = _find(self.index, table, table, [field.column], [], True, path)
            node = _Node(field.related_model, "to_one", field, path)
            node.spec = {"relation": name}
        else:
            raise NotSupportedError(f".graph(): '{path}' is not a relation")
        try:
            order = _order_of(node.model, node.model._meta.ordering or ["pk"])
        except _Untranslatable:
            order = _order_of(node.model, ["pk"])
        if node.kind == "to_many":
            node.spec["order"] = order
        return node

    def include_spec(self, node: _Node) -> dict:
        spec = dict(node.spec, alias=node.alias)
        nested = [self.include_spec(c) for c in node.children.values()]
        if node.kind == "m2m_through":
            inner = {
                "relation": node.through_relation,
                "alias": node.alias,
                "includes": nested,
            }
            spec["includes"] = [inner]
        elif nested:
            spec["includes"] = nested
        return spec


def _translate_where(model, node) -> dict | None:
    if isinstance(node, WhereNode):
        parts = [_translate_where(model, c) for c in node.children]
        parts = [p for p in parts if p is not None]
        if not parts:
            out = None
        elif len(parts) == 1:
            out = parts[0]
        else:
            out = {"and" if node.connector == AND else "or": parts}
            if node.connector not in (AND, OR):
                raise _Untranslatable
        if node.negated:
            if out is None:
                raise _Untranslatable
            out = {"not": out}
        return out
    lhs = getattr(node, "lhs", None)
    if not isinstance(lhs, Col) or lhs.target.model is not model:
        raise _Untranslatable
    column = lhs.target.column
    rhs = node.rhs
    if hasattr(rhs, "resolve_expression"):
        raise _Untranslatable
    if type(node) in _CMP:
        if rhs is None:
            raise _Untranslatable
        return {"cmp": {"field": column, "op": _CMP[type(node)], "value": _plain(rhs)}}
    if type(node) is In:
        return {"in": {"field": column, "values": [_plain(v) for v in rhs]}}
    if type(node) is IsNull:
        return {"is_null": {"field": column, "negated": not rhs}}
    raise _Untranslatable


_FAST_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _class_attr(cls, name):
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


class _ModelPlan:
    """How rows of one model become instances: the columns read, their converters, and
    whether Model.from_db can be bypassed. It can when the model keeps Django's own
    ``__init__``/``from_db``, nothing listens to pre_init/post_init for it, and every field
    attribute is a plain deferred-attribute descriptor: then ``from_db`` would do exactly what
    the binding does (a ModelState with adding=False and the db, each attname set in field
    order)."""

    def __init__(self, model, connection):
        self.model = model
        fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in fields]
        self.columns = [f.column for f in fields]
        self.converters = []
        for f in fields:
            col = Col(model._meta.db_table, f)
            convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            self.converters.append(_converter(convs, col, connection) if convs else None)
        self.fast = (
            model.__init__ is models.Model.__init__
            and getattr(model.from_db, "__func__", None) is models.Model.from_db.__func__
            and not signals.pre_init.has_listeners(model)
            and not signals.post_init.has_listeners(model)
            and all(
                type(_class_attr(model, a)) in _FAST_DESCRIPTORS for a in self.attnames
            )
        )


def _converter(fns, col, connection):
    """Django's converters of one column as the one-argument callable the binding calls."""
    if len(fns) == 1:
        fn = fns[0]
        return lambda v: fn(v, col, connection)

    def convert(v):
        for fn in fns:
            v = fn(v, col, connection)
        return v

    return convert


class _SharedQuery(Query):
    """The unfiltered Query of a cached per-instance queryset, sharing its attributes with
    the other instances' until the queryset first reads it. A prefetch caches one queryset
    per instance, and a Query clone for each (a dozen containers, also work for the cyclic
    collector) is most of what they cost, while a traversal never reads them (the related
    manager's ``all()`` returns the cached queryset, evaluated already). Every read goes
    through ``QuerySet.query``, which first applies the deferred relation filter with
    ``add_q``: that is where this object takes its own copy and becomes a plain Query, before
    anything changes. Copies of it (``clone``, deepcopy, pickling) are plain Query clones."""

    def _own(self):
        own = Query.clone(self)
        self.__dict__ = own.__dict__
        self.__class__ = Query

    def add_q(self, *args, **kwargs):
        self._own()
        return self.add_q(*args, **kwargs)

    def clone(self):
        c = Query.clone(self)
        c.__class__ = Query
        return c

    def __reduce_ex__(self, protocol):
        # Pickled as a plain Query of its own (pickle wants the object's own class in a
        # plain reduce, hence the indirection).
        return _same, (self.clone(),)


def _same(obj):
    return obj


def _shared_query(base):
    """A per-queryset stand-in for a clone of ``base`` (see _SharedQuery), or a clone where
    ``base`` is not a plain Query."""
    if type(base) is not Query:
        return base.clone()
    q = _new(_SharedQuery)
    q.__dict__ = base.__dict__
    return q


class _ToManyPlan:
    """Builds the per-instance querysets a prefetch caches. Django builds each through a new
    related manager (a fresh Query, a filter clone, hints); here the first one is built that
    way and the others are copies of it with the instance-specific parts replaced: the same
    queryset class, the unfiltered query (shared until first read, see _SharedQuery) with the
    relation filter deferred exactly as Django's ``_apply_rel_filters`` defers it, the hints
    and known related objects of that instance."""

    def __init__(self, node):
        rel = node.attach
        self.accessor = rel.get_accessor_name() if isinstance(rel, ForeignObjectRel) else rel.name
        self.many_to_many = rel.many_to_many
        self.reverse_fk = None if rel.many_to_many else rel.field
        self.child_cache = None if rel.many_to_many else rel.field.cache_name
        self.cache_name = None
        self.template = None  # (queryset, pristine query, recipe) once the first one is built

    def queryset(self, obj, related):
        tpl = self.template
        if tpl is not None:
            qs_class, base, state, recipe, target_attname = tpl
            kwargs = {k: (obj if a is None else getattr(obj, a)) for k, a in recipe}
            rel_id = None
            if target_attname is not None:
                rel_id = getattr(obj, target_attname)
            if rel_id is not None or target_attname is None:
                qs = _new(qs_class)
                d = qs.__dict__
                d.update(state)
                d["_hints"] = {"instance": obj}
                d["_query"] = _shared_query(base)
                d["_deferred_filter"] = (False, (), kwargs)
                d["_known_related_objects"] = (
                    {} if target_attname is None else {self.reverse_fk: {rel_id: obj}}
                )
                d["_result_cache"] = related
                d["_prefetch_done"] = True
                return qs
        manager = getattr(obj, self.accessor)
        if self.cache_name is None:
            self.cache_name = (
                manager.prefetch_cache_name
                if self.many_to_many
                else self.reverse_fk.remote_field.cache_name
            )
        qs = manager.get_queryset()
        if tpl is None:
            self.template = self._template(manager, qs, obj)
        qs._result_cache = related
        qs._prefetch_done = True
        return qs

    def _template(self, manager, qs, obj):
        """The copyable state of Django's own queryset, or None where it does not have the
        shape the copies reproduce (then every instance goes through Django's manager)."""
        deferred = qs.__dict__.get("_deferred_filter")
        if not deferred or deferred[0] or deferred[1]:
            return None
        kwargs = deferred[2]
        if self.many_to_many:
            pairs = manager.source_field.related_fields
            recipe = [(k, rh.attname) for k, (_, rh) in zip(kwargs, pairs)]
            target = None
            if qs._known_related_objects:
                return None
        else:
            recipe = [(k, None) for k in kwargs]
            try:
                target = self.reverse_fk.target_field.attname
            except Exception:
                return None
            known = {self.reverse_fk: {getattr(obj, target): obj}}
            if qs._known_related_objects != known:
                return None
        rebuilt = {k: (obj if a is None else getattr(obj, a)) for k, a in recipe}
        if len(recipe) != len(kwargs) or rebuilt != kwargs or qs._hints != {"instance": obj}:
            return None
        state = {
            k: v
            for k, v in qs.__dict__.items()
            if k not in ("_hints", "_query", "_deferred_filter", "_known_related_objects",
                         "_result_cache", "_prefetch_done")
        }  # fmt: skip
        return (type(qs), qs._query.clone(), state, recipe, target)


class _Builder:
    """The binding's object plan (see ``ormdb.Connection.fetch_objects``) for a fetch tree:
    per include the model's columns, attribute names and converters, which relation caches
    to fill, and for to-many relations the callable putting the per-instance queryset into
    ``_prefetched_objects_cache`` as prefetch_related does."""

    def __init__(self, db_alias: str):
        self.db = db_alias
        self.connection = connections[db_alias]
        self.models: dict[type, _ModelPlan] = {}

    def plan(self, node: _Node) -> dict:
        model = node.model
        mp = self.models.get(model)
        if mp is None:
            mp = self.models[model] = _ModelPlan(model, self.connection)
        plan: dict[str, Any] = {
            "cls": model,
            "columns": mp.columns,
            "attnames": mp.attnames,
            "converters": mp.converters,
        }
        if not mp.fast:
            plan["from_db"] = functools.partial(model.from_db, self.db, mp.attnames)
        rel = node.attach
        if node.kind == "root":
            plan["kind"] = "root"
        elif node.kind == "to_one":
            plan["kind"] = "to_one"
            plan["key"] = node.alias
            if isinstance(rel, ForeignObjectRel):
                # Reverse one-to-one: obj.<accessor> and the child's forward cache.
                plan["cache"] = rel.cache_name
                plan["back"] = rel.field.cache_name
            else:
                plan["cache"] = rel.cache_name
                if rel.one_to_one:
                    plan["back"] = rel.remote_field.cache_name
        else:
            many = _ToManyPlan(node)
            plan["key"] = node.alias
            plan["attach"] = self._attach(many, node)
            if node.kind == "m2m_through":
                # The include reads the through rows; the targets are their one include.
                plan["kind"] = "through"
                target = dict(plan, kind="rows")
                target.pop("attach")
                target["includes"] = [self.plan(c) for c in node.children.values()]
                plan["includes"] = [target]
                return plan
            plan["kind"] = "to_many"
            plan["child_cache"] = many.child_cache
        plan["includes"] = [self.plan(c) for c in node.children.values()]
        return plan

    @staticmethod
    def _attach(many: "_ToManyPlan", node: _Node):
        # Through a custom join table the fetch orders the join rows, not the targets.
        order_model = node.model if node.kind == "m2m_through" else None

        def attach(obj, related):
            if order_model is not None:
                related = _python_order(order_model, related)
            qs = many.queryset(obj, related)
            d = obj.__dict__
            prefetched = d.get("_prefetched_objects_cache")
            if prefetched is None:
                prefetched = d["_prefetched_objects_cache"] = {}
            prefetched[many.cache_name] = qs

        return attach


def graph(queryset: models.QuerySet) -> list:
    """Evaluates ``queryset`` (see the module docstring) and returns its model instances."""
    qs = queryset
    db = qs.db
    wrapper = connections[db]
    if wrapper.vendor != "sqlite" or not hasattr(wrapper.Database, "connect") or (
        getattr(wrapper.Database, "__name__", "") != "ormdb"
    ):
        raise NotSupportedError(".graph() needs a database using the django_ormdb backend")
    if qs._fields is not None or qs._iterable_class is not models.query.ModelIterable:
        raise NotSupportedError(".graph() returns model instances: drop values()/values_list()")
    wrapper.ensure_connection()
    conn = wrapper.connection
    model = qs.model
    _check_model(model)
    planner = _Planner(conn, model)

    select = qs.query.select_related
    if select:
        if select is True:
            raise NotSupportedError(
                ".graph(): name the relations in select_related() (no bare select_related())"
            )

        def walk(tree, prefix):
            for name, sub in tree.items():
                path = f"{prefix}__{name}" if prefix else name
                planner.add_path(path, only_to_one=True)
                walk(sub, path)

        walk(select, "")
    for lookup in qs._prefetch_related_lookups:
        if isinstance(lookup, Prefetch):
            if lookup.queryset is not None or lookup.to_attr:
                raise NotSupportedError(
                    ".graph(): Prefetch() with a queryset or to_attr is not supported"
                )
            lookup = lookup.prefetch_through
        planner.add_path(lookup)

    fetch: dict[str, Any] = {"root": model._meta.db_table}
    includes = [planner.include_spec(c) for c in planner.root.children.values()]
    if includes:
        fetch["includes"] = includes
    pk_order = None
    query = qs.query
    try:
        if (
            query.distinct
            or query.annotations
            or query.extra
            or query.combinator
            or len(query.alias_map) > 1
        ):
            raise _Untranslatable
        where = _translate_where(model, query.where)
        ordering = query.order_by or (model._meta.ordering if query.default_ordering else [])
        order = _order_of(model, list(ordering) + ["pk"])
        if where is not None:
            fetch["filter"] = where
        fetch["order"] = order
        if query.low_mark or query.high_mark is not None:
            page: dict[str, Any] = {"offset": query.low_mark}
            if query.high_mark is not None:
                page["limit"] = query.high_mark - query.low_mark
            fetch["page"] = page
    except _Untranslatable:
        pk_order = list(qs.values_list("pk", flat=True))
        pk_col = model._meta.pk.column
        fetch["filter"] = {"in": {"field": pk_col, "values": [_plain(v) for v in pk_order]}}

    plan = _Builder(db).plan(planner.root)
    # Building thousands of linked instances triggers the cyclic collector over and over
    # (a large part of the time, measured); it runs once afterwards instead.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        objs = conn.fetch_objects(fetch, plan, ModelState, db)
    finally:
        if gc_was_enabled:
            gc.enable()
    if pk_order is not None:
        position = {pk: i for i, pk in enumerate(pk_order)}
        objs.sort(key=lambda o: position[o.pk])
    return objs


class GraphQuerySet(models.QuerySet):
    def graph(self) -> list:
        """This queryset with its select_related / prefetch_related tree, read by one ORMDB
        graph fetch. Returns a list of model instances (see django_ormdb.graph)."""
        return graph(self)


GraphManager = models.Manager.from_queryset(GraphQuerySet)
