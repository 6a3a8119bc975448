"""SQLAlchemy 2.0 dialect for ORMDB (``create_engine("ormdb:///app.db")``), its Alembic
implementation, and :func:`graph_fetch`, which runs a query's eager-load tree as one native
graph fetch."""

from __future__ import annotations

from .dialect import OrmdbDialect
from .loader import graph_fetch, graph_fetch_spec

try:  # Alembic is optional: importing the implementation registers it for "ormdb".
    from . import alembic_impl  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pass

__version__ = "0.1.0"

__all__ = ["OrmdbDialect", "graph_fetch", "graph_fetch_spec", "__version__"]
