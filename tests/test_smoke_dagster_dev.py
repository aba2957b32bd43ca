"""Smoke test: `dagster dev` on the example serves the feature graph and its sensor runs a batch.

Starts the real webserver and daemon in their own process group with a temporary DAGSTER_HOME
and data folder, asks `/graphql` what a user would see in the UI, waits for the increment
sensor's first batch run to succeed, then stops the whole group (SIGTERM, then SIGKILL) and
checks that nothing it started is left running. Every wait is bounded.
"""

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

import metaxy_core as mx
from example_project.features import feature_graph

pytestmark = [pytest.mark.smoke, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
TOKEN_ENV = "METAXY_SMOKE_TOKEN"
# One budget for everything after `dagster dev` starts: the UI, the first tick and its run.
BUDGET_SECONDS = 170.0

ASSET_NODES = """
{ assetNodes {
    assetKey { path }
    dependencyKeys { path }
    opVersion
    isPartitioned
    partitionKeys
    partitionDefinition { type name }
    metadataEntries {
      label
      ... on TableColumnLineageMetadataEntry {
        lineage { columnName columnDeps { assetKey { path } columnName } }
      }
    }
} }
"""

LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""

RUNS = """
{ runsOrError(limit: 50) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
} }
"""


@dataclass
class DagsterDev:
    """A running `dagster dev` and how to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def query(self, text: str) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": text}, timeout=10)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids_with_token(token: str) -> list[int]:
    """Processes whose environment carries `token`: everything this test started, however deep."""
    found = []
    needle = f"{TOKEN_ENV}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _stop_group(process: subprocess.Popen[bytes], token: str) -> list[int]:
    """Interrupt the process group, escalating to SIGTERM and SIGKILL; returns pids still alive.

    `dagster dev` shuts down its webserver, daemon and code servers on SIGINT (it maps SIGTERM
    onto the same handler, but may ignore both), so SIGKILL is the last word.
    """
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None and not _pids_with_token(token):
                return []
            time.sleep(0.2)
    process.wait(timeout=5)
    stray = _pids_with_token(token)
    for pid in stray:  # left the group: still ours, so do not leave it behind
        os.kill(pid, signal.SIGKILL)
    return stray


def wait_for(what: str, check: Callable[[], Any], dev: DagsterDev) -> Any:
    """Poll `check` until it returns something truthy, or fail with the server's log."""
    deadline = dev.started + BUDGET_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            code = dev.process.returncode
            pytest.fail(f"dagster dev exited ({code}) while waiting for {what}:\n{dev.tail()}")
        try:
            result = check()
            if result:
                print(f"{what}: after {time.monotonic() - dev.started:.0f}s")
                return result
        except (requests.RequestException, AssertionError, KeyError) as exc:
            last_error = exc
        time.sleep(0.5)
    timeout = time.monotonic() - dev.started
    pytest.fail(
        f"Timed out after {timeout:.0f}s waiting for {what} (last: {last_error!r}):\n{dev.tail()}"
    )


def _dagster_env(tmp_path: Path, token: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the instance settings `make dev` uses (one run at a time on the DuckDB file), with the
    # queue looked at every second rather than every 5 s
    settings = (ROOT / "example_project" / "dagster.yaml").read_text()
    assert "run_queue:\n" in settings
    settings = settings.replace("run_queue:\n", "run_queue:\n  dequeue_interval_seconds: 1\n")
    (home / "dagster.yaml").write_text(settings)
    data = tmp_path / "metaxy_data"
    data.mkdir()
    return os.environ | {
        "DAGSTER_HOME": str(home),
        "METAXY_DATA_DIR": str(data),
        TOKEN_ENV: token,
        "PYTHONUNBUFFERED": "1",
    }


def test_definitions_validate():
    # What `dagster definitions validate -w workspace.yaml` checks, in process (the CLI spent
    # some 20 s starting up): the workspace names the module, and its definitions load.
    import dagster as dg
    import yaml

    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    module = importlib.import_module(entry["python_module"]["module_name"])
    dg.Definitions.validate_loadable(module.defs)


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[DagsterDev]:
    token = uuid.uuid4().hex
    port = _free_port()
    log = tmp_path / "dagster_dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=_dagster_env(tmp_path, token),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield DagsterDev(f"http://127.0.0.1:{port}", process, log)
    finally:
        stray = _stop_group(process, token)
    assert not stray, f"processes outlived dagster dev's group: {stray}"
    assert not _pids_with_token(token)


def _nodes_by_key(dev: DagsterDev) -> dict[str, dict[str, Any]]:
    nodes = dev.query(ASSET_NODES)["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def _loaded_nodes(dev: DagsterDev) -> dict[str, dict[str, Any]] | None:
    """The asset nodes once the code location has loaded; fails fast on a load error."""
    entries = dev.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        if entry["locationOrLoadError"] and "message" in entry["locationOrLoadError"]:
            pytest.fail(f"code location failed to load: {entry['locationOrLoadError']['message']}")
    nodes = _nodes_by_key(dev)
    return nodes if all(k.path in nodes for k in feature_graph().keys) else None


def _column_lineage(node: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    entry = next(e for e in node["metadataEntries"] if e["label"] == "dagster/column_lineage")
    return {
        column["columnName"]: {
            ("/".join(dep["assetKey"]["path"]), dep["columnName"]) for dep in column["columnDeps"]
        }
        for column in entry["lineage"]
    }


def _check_asset_nodes(nodes: dict[str, dict[str, Any]]) -> None:
    graph = feature_graph()
    for key in graph.keys:
        node = nodes[key.path]
        deps = {"/".join(d["path"]) for d in node["dependencyKeys"]}
        assert {d.feature.path for d in graph.spec(key).deps} <= deps, (key, deps)
        assert node["opVersion"] == mx.feature_code_version(graph, key), key
        assert node["isPartitioned"], key
        assert node["partitionDefinition"]["type"] == "DYNAMIC", key
        labels = {e["label"]: e for e in node["metadataEntries"]}
        assert "dagster/column_lineage" in labels, (key, sorted(labels))
    embedding = _column_lineage(nodes["embedding"])
    assert ("image", "digit") in embedding["digit"]  # a carried column
    assert ("normalized", "metaxy_data_version__pixels") in embedding["metaxy_provenance__vector"]
    assert ("image", "metaxy_data_version__label") in embedding["metaxy_provenance__vector"]


def _successful_batch_run(dev: DagsterDev) -> dict[str, Any] | None:
    runs = dev.query(RUNS)["runsOrError"]["results"]
    failed = [r["runId"] for r in runs if r["status"] in ("FAILURE", "CANCELED")]
    if failed:
        pytest.fail(f"runs failed: {failed}\n{dev.tail()}")
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        if run["status"] == "SUCCESS" and "dagster/partition" in tags:
            return run
    return None


def test_dagster_dev_serves_the_example_and_runs_a_batch(dagster_dev: DagsterDev):
    nodes = wait_for("the example's asset nodes", lambda: _loaded_nodes(dagster_dev), dagster_dev)
    _check_asset_nodes(nodes)
    partitions = wait_for(
        "the sensor's first batch partition",
        lambda: _nodes_by_key(dagster_dev)["image"]["partitionKeys"],
        dagster_dev,
    )
    run = wait_for(
        "a successful batch run", lambda: _successful_batch_run(dagster_dev), dagster_dev
    )
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] in partitions
    assert tags["dagster/sensor_name"] == "metaxy_increment_sensor"

    # The Materialize button: a partition added by hand runs without any sensor manifest.
    location = dagster_dev.query(LOCATIONS)["workspaceOrError"]["locationEntries"][0]["name"]
    repository = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    added = dagster_dev.query(ADD_PARTITION % _graphql(repository))["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added
    job = repository | {"jobName": "metaxy_job"}
    launched = dagster_dev.query(LAUNCH_MANUAL % _graphql(job))["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    wait_for("the manual partition's run", lambda: _run_succeeded(dagster_dev, run_id), dagster_dev)


MANUAL_PARTITION = "manual-smoke"
ADD_PARTITION = (
    'mutation { addDynamicPartition(repositorySelector: %s, partitionsDefName: "metaxy_batches", '
    f'partitionKey: "{MANUAL_PARTITION}") '
    "{ __typename ... on PythonError { message } ... on UnauthorizedError { message } } }"
)
LAUNCH_MANUAL = (
    "mutation { launchRun(executionParams: { selector: %s, executionMetadata: { tags: ["
    f'{{ key: "dagster/partition", value: "{MANUAL_PARTITION}" }}] }} }}) '
    "{ __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
    "... on RunConfigValidationInvalid { errors { message } } } }"
)


def _graphql(selector: dict[str, str]) -> str:
    """A selector as a GraphQL input object literal."""
    fields = ", ".join(f'{k}: "{v}"' for k, v in selector.items())
    return "{ " + fields + " }"


def _run_succeeded(dev: DagsterDev, run_id: str) -> bool:
    runs = dev.query(RUNS)["runsOrError"]["results"]
    status = next((r["status"] for r in runs if r["runId"] == run_id), None)
    if status in ("FAILURE", "CANCELED"):
        pytest.fail(f"the manual run {run_id} failed:\n{dev.tail()}")
    return status == "SUCCESS"
