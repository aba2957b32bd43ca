"""Database servers for the SQL store tests (stores, Dagster), started once per test session.

PostgreSQL comes from the `pgserver` package (server binaries in a wheel, a dev
dependency): a real server on a Unix socket, with a fresh database per test.

ClickHouse: no server installs from the project's own files. Debian ships ClickHouse
18.16 (2018), too old for clickhouse-connect and Ibis, and PyPI has only chDB, an
in-process engine Ibis cannot connect to. The ClickHouse tests are skipped with that
reason unless METAXY_CLICKHOUSE_URL names a server to run them against (each test gets
its own database on it).

Also the Hypothesis profiles (below).
"""

import itertools
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Hypothesis profiles. `suite` (the default) keeps `make test` inside its time budget; each run
# draws fresh examples, so the search still widens run after run. `thorough` searches ten
# times deeper: METAXY_HYPOTHESIS=thorough make test. Tests that name max_examples themselves
# (the small, slow-per-example ones) keep their number under both.
settings.register_profile("suite", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("METAXY_HYPOTHESIS", "suite"))

CLICKHOUSE_SKIP = (
    "no ClickHouse server installs from PyPI or Debian here (Debian has 18.16 from 2018; "
    "PyPI has only the in-process chDB, which Ibis cannot reach): set METAXY_CLICKHOUSE_URL "
    "to a server to run these tests"
)
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server started for this test session (its `postgres` db)."""
    pgserver = pytest.importorskip("pgserver", reason="the dev dependency pgserver is missing")
    # Not under pytest's private temp tree: as root, pgserver runs the server as its own
    # user, which must reach the data directory.
    data = tempfile.mkdtemp(prefix="metaxy-pg-")
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        _without_durability(server.get_uri())
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def _without_durability(url: str) -> None:
    """No flush to disk at commit or checkpoint: a throwaway server needs no crash safety.

    Tests kill client processes, never the machine, so what they check holds; the commits
    and the shutdown checkpoint stop waiting on the disk (the suite's PostgreSQL tests spent
    most of their time there).
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            con.execute(f"ALTER SYSTEM SET {setting} = off")
        con.execute("SELECT pg_reload_conf()")


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A local S3-compatible server (moto's server mode) for this test session.

    Yields the storage options that reach it; the bucket `metaxy` exists. delta-rs commits
    to S3 with conditional writes (If-None-Match), which moto honours like AWS S3 does.
    """
    import socket
    import subprocess
    import sys
    import time

    boto3 = pytest.importorskip("boto3", reason="the dev dependency moto[server] is missing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Its own process: deltalake calls that hold the GIL would starve a server thread.
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start within 30 s")
            time.sleep(0.1)
    options = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "metaxy",
        "AWS_SECRET_ACCESS_KEY": "metaxy",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    try:
        client = boto3.client(
            "s3",
            endpoint_url=options["AWS_ENDPOINT_URL"],
            aws_access_key_id="metaxy",
            aws_secret_access_key="metaxy",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="metaxy")
        yield options
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def s3_uri(s3_server) -> str:
    """A fresh prefix in the session's bucket."""
    return f"s3://metaxy/test-{os.getpid()}-{next(_databases)}"
