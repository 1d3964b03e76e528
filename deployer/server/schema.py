"""The tracking database's schema: check it before serving, upgrade it as its own step.

MLflow creates missing tables by itself when a server starts, so several Cloud Run instances
starting together could race to migrate. We never let `serve` do that: the migration is a
separate step (`migrate`, the Cloud Run job), and `serve` refuses an empty or outdated schema.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    from mlflow.store.db.utils import _make_parent_dirs_if_sqlite

    _make_parent_dirs_if_sqlite(uri)
    return sqlalchemy.create_engine(uri, poolclass=NullPool)


def schema_state(uri: str) -> SchemaState:
    """Read the database's Alembic revision (None when empty) and the one this MLflow needs."""
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        _is_empty_database,
    )

    engine = _engine(uri)
    try:
        current = None if _is_empty_database(engine) else _get_schema_version(engine)
    finally:
        engine.dispose()
    return SchemaState(current=current, head=_get_latest_schema_revision())


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
