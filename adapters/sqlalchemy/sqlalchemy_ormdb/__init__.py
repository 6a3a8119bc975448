"""SQLAlchemy 2.0 dialect for ORMDB (``create_engine("ormdb:///app.db")``), its Alembic
implementation, and :func:`graph_fetch`, which runs a query's eager-load tree as one native
graph fetch."""

from __future__ import annotations

from .dialect import OrmdbDialect, register_alembic_if_loaded
from .loader import graph_fetch, graph_fetch_spec

# Alembic support is registered lazily (see dialect.register_alembic_if_loaded).
register_alembic_if_loaded()

__version__ = "0.1.0"

__all__ = ["OrmdbDialect", "graph_fetch", "graph_fetch_spec", "__version__"]
