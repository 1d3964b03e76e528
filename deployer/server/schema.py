"""The tracking database's schema: check it before serving, upgrade it as its own step.

MLflow creates missing tables by itself when a server starts, so several Cloud Run instances
starting together could race to migrate. We never let `serve` do that: the migration is a
separate step (`migrate`, the Cloud Run job), and `serve` refuses an empty or outdated schema.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

MIGRATE_HINT = (
    "run the migration first (`mlflow-server-entrypoint migrate` with the same settings; "
    "on Cloud Run, the migration job that `deployer deploy` executes)"
)


class SchemaNotReady(RuntimeError):
    """The database is empty or behind this server's MLflow version."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _engine(uri: str) -> sqlalchemy.engine.Engine:
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return sqlalchemy.create_engine(uri, poolclass=NullPool)


def _migrations_dir() -> Path:
    """MLflow's Alembic scripts, found without importing mlflow (which takes seconds)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mlflow is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations"


_REVISION = re.compile(r"^revision\s*=\s*['\"]([0-9a-f]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.M)


def head_revision() -> str:
    """The newest migration: the one revision no other names as its down_revision.

    Read from the scripts' text: having Alembic load them would import half of mlflow.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (_migrations_dir() / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        if m := _REVISION.search(text):
            revisions.add(m.group(1))
        if m := _DOWN.search(text):
            parents.update(re.findall(r"[0-9a-f]{6,}", m.group(1)))
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"MLflow's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def schema_state(uri: str) -> SchemaState:
    """Read the database's Alembic revision (None when empty) and the one this MLflow needs.

    Checked before every start, so it stays lean: plain SQLAlchemy and Alembic, no mlflow import.
    """
    from alembic.runtime.migration import MigrationContext

    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            tables = [
                t
                for t in sqlalchemy.inspect(conn).get_table_names()
                if not t.startswith("alembic_")
            ]
            current = MigrationContext.configure(conn).get_current_revision() if tables else None
    finally:
        engine.dispose()
    return SchemaState(current=current, head=head_revision())


def require_current_schema(uri: str) -> SchemaState:
    state = schema_state(uri)
    if state.current is None:
        raise SchemaNotReady("the tracking database has no MLflow tables yet: " + MIGRATE_HINT)
    if not state.up_to_date:
        raise SchemaNotReady(
            f"the tracking database schema is at {state.current}, this server needs {state.head}: "
            + MIGRATE_HINT
        )
    return state


def upgrade_schema(uri: str) -> tuple[str | None, str]:
    """Create or upgrade the schema to head; idempotent. Returns (before, after) revisions."""
    from mlflow.store.db.utils import _initialize_tables, _is_empty_database, _upgrade_db

    # Alembic logs each step at INFO; keep the job's log to the lines that matter.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    before = schema_state(uri)
    if before.up_to_date:
        return before.current, before.head
    engine = _engine(uri)
    try:
        if _is_empty_database(engine):
            _initialize_tables(engine)
        else:
            _upgrade_db(engine)
    finally:
        engine.dispose()
    after = schema_state(uri)
    return before.current, after.current or after.head
