"""Engines, sessions, migrations and the writer lock for the state store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from enclave.config import Settings
from enclave.errors import StateError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@cache
def engine_for(url: str) -> Engine:
    """Return the (cached) engine for a database URL, with SQLite made safe for writers."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are wrong).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # type: ignore[no-untyped-def]
            # IMMEDIATE takes the write lock at BEGIN, so two writers never both read the
            # same chain head and then collide at COMMIT.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    settings.require_initialised()
    factory = sessionmaker(bind=engine_for(settings.database_url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise StateError(f"state store error ({settings.database_url}): {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def write_lock(session: Session, model: type, key: int = 1) -> object:
    """Lock one row for the rest of the transaction (``FOR UPDATE`` where supported).

    On SQLite the whole database is already write-locked by ``BEGIN IMMEDIATE``.
    """
    stmt = select(model).where(model.id == key)  # type: ignore[attr-defined]
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    cfg.attributes["engine"] = engine_for(settings.database_url)
    command.upgrade(cfg, revision)
