"""Runs a SQLAlchemy query's eager-load tree as one native ORMDB graph fetch.

``graph_fetch(session, select(User).options(selectinload(User.posts).selectinload(
Post.comments)))`` sends a single GraphFetch (root ``users``, include ``posts``, include
``comments``) to the engine instead of one SELECT per level, and returns ORM instances whose
eager-loaded relationships are already populated (or, with ``as_dicts=True``, the engine's
nested dicts).

What translates: a select of one mapped entity (single-table mapping); loader options
``selectinload`` / ``joinedload`` / ``subqueryload`` / ``immediateload`` chains over
relationships that follow one foreign key (many-to-one, one-to-many, one-to-one) or a plain
association table (many-to-many); a WHERE made of AND / OR / NOT over ``column <op> value``,
``IN``, ``LIKE`` and ``IS [NOT] NULL`` on the root entity's columns; ORDER BY root columns;
LIMIT / OFFSET. Anything else raises :class:`NotImplementedError` naming the construct
rather than running something different.

The fetch reads the last committed state of the database (not the session's pending or
flushed-but-uncommitted changes), so the session must have nothing pending.
"""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Column, Table
from sqlalchemy.orm import Mapper, RelationshipProperty, Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.interfaces import MANYTOMANY, MANYTOONE, ONETOMANY
from sqlalchemy.orm.session import make_transient_to_detached
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnElement,
    Grouping,
    Null,
    UnaryExpression,
)
from sqlalchemy.sql.selectable import Select

_EAGER_STRATEGIES = {"selectin", "joined", "subquery", "immediate"}

_CMP_OPS = {
    operators.eq: "eq",
    operators.ne: "ne",
    operators.lt: "lt",
    operators.le: "le",
    operators.gt: "gt",
    operators.ge: "ge",
}
# op(column, value) == swapped op(value, column)
_SWAPPED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}


class _Node:
    """One include: the relationship reached from the parent and the includes below it."""

    def __init__(self, prop: Optional[RelationshipProperty[Any]]) -> None:
        self.prop = prop
        self.children: dict[str, _Node] = {}

    def child(self, prop: RelationshipProperty[Any]) -> "_Node":
        node = self.children.get(prop.key)
        if node is None:
            node = self.children[prop.key] = _Node(prop)
        return node


def _strip_id(name: str) -> Optional[str]:
    for suffix in ("_id", "Id", "_ID"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _single_table(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    if (
        not isinstance(table, Table)
        or mapper.inherits is not None
        or mapper.polymorphic_on is not None
    ):
        raise NotImplementedError(
            f"graph_fetch: {mapper.class_.__name__} is not mapped to exactly one table"
        )
    return table


def _fk_columns(prop: RelationshipProperty[Any]) -> list[Column[Any]]:
    return [c for c, _ in prop.local_remote_pairs or []]


def relation_name(prop: RelationshipProperty[Any]) -> str:
    """The name ORMDB's catalog gives the relation behind ``prop``: a many-to-one is named
    after its foreign key column without ``_id`` (else after the parent table), a one-to-many
    after the child table, a many-to-many after the far table. Relationships whose name the
    catalog would have to disambiguate (two foreign keys to one table, a name equal to a
    column) are refused, since the catalog's choice then depends on declaration order."""
    parent = _single_table(prop.parent)
    target = _single_table(prop.mapper)
    if prop.secondary is not None:
        if prop.direction is not MANYTOMANY or not isinstance(prop.secondary, Table):
            raise NotImplementedError(f"graph_fetch: relationship {prop} has an unusual secondary")
        wanted = target.name
        holder, far = prop.secondary, target
        owner = parent
    elif prop.direction is MANYTOONE:
        cols = [c for c, r in prop.local_remote_pairs or [] if c.table is parent]
        stripped = _strip_id(cols[0].name) if len(cols) == 1 else None
        wanted = stripped or target.name
        holder, far, owner = parent, target, parent
    elif prop.direction is ONETOMANY:
        wanted = target.name
        holder, far, owner = target, parent, parent
    else:  # pragma: no cover - SQLAlchemy has no other direction
        raise NotImplementedError(f"graph_fetch: relationship {prop}")
    fks_to_far = [fk for fk in holder.foreign_key_constraints if fk.referred_table is far]
    if len(fks_to_far) != 1:
        raise NotImplementedError(
            f"graph_fetch: {holder.name} has {len(fks_to_far)} foreign keys to {far.name}; "
            f"the native relation name for {prop} is ambiguous"
        )
    if any(c.name.lower() == wanted.lower() for c in owner.columns):
        raise NotImplementedError(
            f"graph_fetch: relation name {wanted!r} for {prop} clashes with a column of {owner.name}"
        )
    return wanted


def _load_tree(stmt: Select[Any], root_mapper: Mapper[Any]) -> _Node:
    root = _Node(None)
    for opt in stmt._with_options:
        context = getattr(opt, "context", None)
        if context is None:
            raise NotImplementedError(f"graph_fetch: option {opt!r} is not a loader option")
        for element in context:
            strategy = dict(element.strategy or ()).get("lazy")
            if strategy not in _EAGER_STRATEGIES:
                raise NotImplementedError(
                    f"graph_fetch: loader strategy {strategy!r} (only eager loads translate)"
                )
            props = [p for p in element.path if isinstance(p, RelationshipProperty)]
            if not props or props[0].parent is not root_mapper:
                raise NotImplementedError(
                    f"graph_fetch: loader path {element.path} does not start at the root"
                )
            node = root
            for prop in props:
                node = node.child(prop)
    return root


def _column_of(expr: Any, table: Table) -> Optional[Column[Any]]:
    if isinstance(expr, Column) and expr.table is table:
        return expr
    return None


def _value(expr: Any) -> tuple[bool, Any]:
    if isinstance(expr, BindParameter):
        value = expr.effective_value
        if isinstance(value, (bool, int, float, str)) or value is None:
            return True, value
        raise NotImplementedError(f"graph_fetch: parameter value of type {type(value).__name__}")
    if isinstance(expr, Null):
        return True, None
    return False, None


def _filter(expr: Any, table: Table) -> dict[str, Any]:
    if isinstance(expr, Grouping):
        return _filter(expr.element, table)
    if isinstance(expr, BooleanClauseList):
        key = {operators.and_: "and", operators.or_: "or"}.get(expr.operator)
        if key is not None:
            return {key: [_filter(e, table) for e in expr.clauses]}
    if isinstance(expr, UnaryExpression) and expr.operator is operators.inv:
        return {"not": _filter(expr.element, table)}
    if isinstance(expr, BinaryExpression):
        op = expr.operator
        left, right = expr.left, expr.right
        col = _column_of(left, table)
        if op in _CMP_OPS:
            swapped = False
            if col is None:
                col, swapped, left, right = _column_of(right, table), True, right, left
            ok, value = _value(right)
            if col is not None and ok and value is not None:
                name = _CMP_OPS[op]
                return {
                    "cmp": {
                        "field": col.name,
                        "op": _SWAPPED[name] if swapped else name,
                        "value": value,
                    }
                }
        if (
            op in (operators.is_, operators.is_not)
            and col is not None
            and _value(right) == (True, None)
        ):
            return {"is_null": {"field": col.name, "negated": op is operators.is_not}}
        if (
            op in (operators.in_op, operators.not_in_op)
            and col is not None
            and isinstance(right, BindParameter)
        ):
            values = right.effective_value
            if isinstance(values, (list, tuple)) and all(
                v is None or isinstance(v, (bool, int, float, str)) for v in values
            ):
                return {
                    "in": {
                        "field": col.name,
                        "values": list(values),
                        "negated": op is operators.not_in_op,
                    }
                }
        if op in (operators.like_op, operators.not_like_op) and col is not None:
            ok, pattern = _value(right)
            escape = expr.modifiers.get("escape")
            if ok and isinstance(pattern, str):
                f: dict[str, Any] = {
                    "field": col.name,
                    "pattern": pattern,
                    "negated": op is operators.not_like_op,
                }
                if escape:
                    f["escape"] = escape
                return {"like": f}
    raise NotImplementedError(
        f"graph_fetch: WHERE clause {expr} does not translate to a native filter"
    )


def _order(stmt: Select[Any], table: Table) -> list[dict[str, Any]]:
    out = []
    for clause in stmt._order_by_clauses:
        desc = False
        nulls = None
        expr = clause
        while isinstance(expr, UnaryExpression):
            if expr.modifier is operators.desc_op:
                desc = True
            elif expr.modifier is operators.nulls_first_op:
                nulls = "first"
            elif expr.modifier is operators.nulls_last_op:
                nulls = "last"
            elif expr.modifier is not operators.asc_op:
                break
            expr = expr.element
        col = _column_of(expr, table)
        if col is None:
            raise NotImplementedError(
                f"graph_fetch: ORDER BY {clause} is not a column of {table.name}"
            )
        item: dict[str, Any] = {"field": col.name, "desc": desc}
        if nulls:
            item["nulls"] = nulls
        out.append(item)
    return out


def _int_clause(clause: Any, what: str) -> Optional[int]:
    if clause is None:
        return None
    ok, value = _value(clause)
    if not ok or not isinstance(value, int):
        raise NotImplementedError(f"graph_fetch: {what} must be an integer")
    return value


def _include(node: _Node) -> dict[str, Any]:
    assert node.prop is not None
    include: dict[str, Any] = {
        "relation": relation_name(node.prop),
        "alias": node.prop.key,
        "select": [c.name for c in _single_table(node.prop.mapper).columns],
    }
    if node.prop.order_by:
        include["order"] = [
            {"field": c.name, "desc": False}
            for c in node.prop.order_by
            if _column_of(c, _single_table(node.prop.mapper)) is not None
        ]
        if len(include["order"]) != len(node.prop.order_by):
            raise NotImplementedError(f"graph_fetch: order_by of {node.prop} is not plain columns")
    if node.children:
        include["includes"] = [_include(c) for c in node.children.values()]
    return include


def _root_mapper(stmt: Select[Any]) -> Mapper[Any]:
    if not isinstance(stmt, Select):
        raise TypeError("graph_fetch needs a select() statement")
    descs = stmt.column_descriptions
    entity = descs[0].get("entity") if len(descs) == 1 else None
    if entity is None or descs[0].get("type") is not entity:
        raise NotImplementedError("graph_fetch: the select must be of exactly one mapped entity")
    from sqlalchemy import inspect

    return inspect(entity)  # type: ignore[no-any-return]


def graph_fetch_spec(stmt: Select[Any]) -> dict[str, Any]:
    """The GraphFetch dict (see the ormdb binding's ``Connection.fetch``) for ``stmt``."""
    mapper = _root_mapper(stmt)
    table = _single_table(mapper)
    spec: dict[str, Any] = {"root": table.name, "select": [c.name for c in table.columns]}
    if stmt.whereclause is not None:
        spec["filter"] = _filter(stmt.whereclause, table)
    order = _order(stmt, table)
    if order:
        spec["order"] = order
    limit = _int_clause(stmt._limit_clause, "LIMIT")
    offset = _int_clause(stmt._offset_clause, "OFFSET")
    if limit is not None or offset:
        page: dict[str, Any] = {}
        if limit is not None:
            page["limit"] = limit
        if offset:
            page["offset"] = offset
        spec["page"] = page
    unsupported = [
        name
        for name, present in (
            ("GROUP BY", bool(stmt._group_by_clauses)),
            ("HAVING", stmt._having_criteria != ()),
            ("DISTINCT", bool(stmt._distinct)),
            ("JOIN", bool(stmt._setup_joins)),
        )
        if present
    ]
    if unsupported:
        raise NotImplementedError(f"graph_fetch: {', '.join(unsupported)} does not translate")
    tree = _load_tree(stmt, mapper)
    if tree.children:
        spec["includes"] = [_include(c) for c in tree.children.values()]
    return spec


class _Builder:
    """Turns nested dicts into persistent instances in ``session``, reusing instances the
    session already holds (identity map) and marking the fetched relationships loaded."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.column_keys: dict[Mapper[Any], list[tuple[str, str]]] = {}

    def _columns(self, mapper: Mapper[Any]) -> list[tuple[str, str]]:
        keys = self.column_keys.get(mapper)
        if keys is None:
            keys = [
                (p.key, p.columns[0].name)
                for p in mapper.column_attrs
                if isinstance(p.columns[0], Column)
            ]
            self.column_keys[mapper] = keys
        return keys

    def instance(self, mapper: Mapper[Any], row: dict[str, Any], node: _Node) -> Any:
        table = _single_table(mapper)
        pk = tuple(row[c.name] for c in mapper.primary_key if c.table is table)
        key = mapper.identity_key_from_primary_key(pk)
        obj = self.session.identity_map.get(key)
        fresh = obj is None
        if fresh:
            obj = mapper.class_manager.new_instance()
            state = instance_state(obj)
            # Column values go straight into the instance dict, as SQLAlchemy's own loader does;
            # make_transient_to_detached then marks them committed and expires the rest.
            state.dict.update((attr, row.get(col)) for attr, col in self._columns(mapper))
            make_transient_to_detached(obj)
            # Attached before its relationships are built, so a row reached again further down
            # the tree resolves to this same instance. Every instance of the tree is attached
            # here, so Session.add's cascade walk would only revisit them: attach the one state.
            self.session._update_impl(state)
        for child in node.children.values():
            prop = child.prop
            assert prop is not None
            related = row.get(prop.key)
            if prop.uselist:
                value: Any = [self.instance(prop.mapper, r, child) for r in related or []]
                if prop.collection_class not in (None, list):
                    value = prop.collection_class(value)  # type: ignore[misc]
            else:
                value = self.instance(prop.mapper, related, child) if related is not None else None
            set_committed_value(obj, prop.key, value)
        return obj


def _native_connection(session: Session, mapper: Mapper[Any]) -> Any:
    dbapi_conn = session.connection(bind_arguments={"mapper": mapper}).connection.driver_connection
    if not hasattr(dbapi_conn, "fetch"):
        raise NotImplementedError("graph_fetch needs a session bound to an ormdb:// engine")
    return dbapi_conn


def graph_fetch(session: Session, stmt: Select[Any], *, as_dicts: bool = False) -> list[Any]:
    """Runs ``stmt`` and its eager-load tree as one native graph fetch.

    Returns ORM instances (attached to ``session``, eager-loaded relationships populated) or,
    with ``as_dicts=True``, nested dicts keyed by column name and relationship attribute name.
    The session must have no pending changes: the fetch reads committed data.
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("graph_fetch reads committed data: commit the session's changes first")
    mapper = _root_mapper(stmt)
    spec = graph_fetch_spec(stmt)
    rows = _native_connection(session, mapper).fetch(spec)
    if as_dicts:
        return rows  # type: ignore[no-any-return]
    tree = _load_tree(stmt, mapper)
    builder = _Builder(session)
    return [builder.instance(mapper, r, tree) for r in rows]
