"""SQLAlchemy engines for citywatch's own small databases (work orders, device commands).

Both stores take a URL: SQLite by default (a file under the state directory, shared by several
processes: the service, its API and the CLI), or PostgreSQL for a city that runs one. A SQLite
engine gets the store's PRAGMAs on every new connection and waits ``timeout_s`` for another
process's write lock instead of failing; ``sqlite://`` is one in-memory database shared by
every thread (tests, doctests). Any other URL gets pre-ping, so a connection the database
dropped (a PostgreSQL restart) is replaced instead of failing the next transaction.

Example:
    >>> from sqlalchemy import text
    >>> eng = make_engine("sqlite://", timeout_s=5, pragmas=("foreign_keys=ON",))
    >>> with eng.connect() as c:
    ...     c.execute(text("PRAGMA foreign_keys")).scalar()
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

_IN_MEMORY = ("sqlite://", "sqlite:///:memory:")


def make_engine(url: str, *, timeout_s: float, pragmas: Sequence[str]) -> Engine:
    """An engine for ``url``; SQLite connections run ``PRAGMA p`` for each of ``pragmas``."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # The services call the store from worker threads (asyncio.to_thread).
    kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": timeout_s}}
    if url in _IN_MEMORY:
        kw["poolclass"] = StaticPool
    engine = create_engine(url, **kw)

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in pragmas:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    event.listen(engine, "connect", on_connect)
    return engine
