"""The state store: SQLAlchemy models, engine/session handling and Alembic migrations.

SQLite under the enclave home by default; any SQLAlchemy URL (PostgreSQL in production) works
unchanged because nothing here uses dialect-specific SQL except the write-lock helper.
"""

from enclave.state.db import engine_for, migrate, session_scope, write_lock

__all__ = ["engine_for", "migrate", "session_scope", "write_lock"]
