"""Database servers for the SQL store tests (stores, Dagster), started once per test session.

PostgreSQL comes from the `pgserver` package (server binaries in a wheel, a dev
dependency): a real server on a Unix socket, with a fresh database per test.

ClickHouse: no server installs from the project's own files. Debian ships ClickHouse
18.16 (2018), too old for clickhouse-connect and Ibis, and PyPI has only chDB, an
in-process engine Ibis cannot connect to. The ClickHouse tests are skipped with that
reason unless METAXY_CLICKHOUSE_URL names a server to run them against (each test gets
its own database on it).
"""

import itertools
import os
import re
import warnings
from collections.abc import Iterator

import pytest

CLICKHOUSE_SKIP = (
    "no ClickHouse server installs from PyPI or Debian here (Debian has 18.16 from 2018; "
    "PyPI has only the in-process chDB, which Ibis cannot reach): set METAXY_CLICKHOUSE_URL "
    "to a server to run these tests"
)
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """The URL of a PostgreSQL server started for this test session (its `postgres` db)."""
    pgserver = pytest.importorskip("pgserver", reason="the dev dependency pgserver is missing")
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"metaxy_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return re.sub(r"/postgres(\?|$)", rf"/{name}\1", postgres_server, count=1)


@pytest.fixture
def clickhouse_url() -> str:
    """A fresh database on the ClickHouse server named by METAXY_CLICKHOUSE_URL (else skip)."""
    base = os.environ.get("METAXY_CLICKHOUSE_URL")
    if not base:
        pytest.skip(CLICKHOUSE_SKIP)
    import clickhouse_connect

    name = f"metaxy_test_{os.getpid()}_{next(_databases)}"
    client = clickhouse_connect.get_client(dsn=base)
    client.command(f"CREATE DATABASE {name}")
    return re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", base.rstrip("/"), count=1)
