"""Alembic autogenerate, upgrade and downgrade against an ORMDB file database."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import create_engine, inspect

alembic = pytest.importorskip("alembic")
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

MODELS_V1 = """
from typing import Optional
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
"""

MODELS_V2 = MODELS_V1 + """
class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
"""

MODELS_V3 = MODELS_V2.replace(
    "name: Mapped[str] = mapped_column(String(50))",
    "name: Mapped[str] = mapped_column(String(50))\n"
    "    born: Mapped[Optional[int]] = mapped_column(nullable=True)",
)

ENV = """
import sys
sys.path.insert(0, {models_dir!r})
import importlib
from alembic import context
from sqlalchemy import create_engine
import app_models
importlib.reload(app_models)
url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=app_models.Base.metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""


@pytest.fixture
def project(tmp_path):
    url = f"ormdb:///{tmp_path / 'migrate.db'}"
    cfg = Config(str(tmp_path / "alembic.ini"))
    cfg.set_main_option("script_location", str(tmp_path / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.init(cfg, str(tmp_path / "migrations"))
    (tmp_path / "migrations" / "env.py").write_text(ENV.format(models_dir=str(tmp_path)))
    return tmp_path, cfg, url


def _write_models(path, src):
    (path / "app_models.py").write_text(textwrap.dedent(src))


def test_autogenerate_upgrade_downgrade(project):
    path, cfg, url = project
    _write_models(path, MODELS_V1)
    r1 = command.revision(cfg, message="authors", autogenerate=True)
    command.upgrade(cfg, "head")
    _write_models(path, MODELS_V2)
    r2 = command.revision(cfg, message="books", autogenerate=True)
    src2 = open(r2.path).read()
    assert "create_table('books'" in src2 or 'create_table("books"' in src2
    command.upgrade(cfg, "head")
    _write_models(path, MODELS_V3)
    r3 = command.revision(cfg, message="born", autogenerate=True)
    assert "add_column" in open(r3.path).read()
    command.upgrade(cfg, "head")

    eng = create_engine(url)
    insp = inspect(eng)
    assert set(insp.get_table_names()) == {"alembic_version", "authors", "books"}
    assert [c["name"] for c in insp.get_columns("authors")] == ["id", "name", "born"]
    assert [i["column_names"] for i in insp.get_indexes("books")] == [["author_id"]]
    eng.dispose()

    # Nothing left to autogenerate once the database matches the models.
    r4 = command.revision(cfg, message="noop", autogenerate=True)
    body = open(r4.path).read()
    assert "op.add_column" not in body and "op.create_table" not in body and "op.drop" not in body

    command.downgrade(cfg, r2.revision)
    eng = create_engine(url)
    assert [c["name"] for c in inspect(eng).get_columns("authors")] == ["id", "name"]
    eng.dispose()
    command.downgrade(cfg, r1.revision)
    command.downgrade(cfg, "base")
    eng = create_engine(url)
    assert inspect(eng).get_table_names() == ["alembic_version"]
    eng.dispose()
