"""Run the `metaxy` console script in a subprocess, as a user would, on real stores.

A project is a temporary directory with a metaxy.toml naming the test graphs
(`tests.cli.features`) and a DuckDB file or a Delta directory filled with the video graph
(filled once per session, copied per test). Every command runs at least once as a
subprocess (`Project.run`, `run_parallel`); variations of its options run the same entry
point in this process (`Project.call`), which skips the ~2 s interpreter start.
"""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import metaxy_core as mx
from metaxy_core.cli import load_config, main
from metaxy_core.testing import compute_increment
from tests.core import video

ROOT = Path(__file__).resolve().parents[2]
METAXY = Path(sys.executable).parent / "metaxy"
STORE_URIS = {"duckdb": "duckdb://meta.duckdb", "delta": "delta://lake"}


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one line a failing command prints."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def _environ(env: dict[str, str] | None) -> dict[str, str]:
    """The environment without the caller's METAXY_* settings; PYTHONPATH finds the graphs."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("METAXY_") and k != "COLUMNS"
    }
    return environ | {"PYTHONPATH": str(ROOT)} | (env or {})


def run_metaxy(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run the console script in a subprocess."""
    return run_parallel([args], cwd=cwd, env=env)[0]


def run_parallel(
    commands: Sequence[Sequence[str]],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    envs: Sequence[dict[str, str]] | None = None,
) -> list[Result]:
    """Run independent commands as concurrent subprocesses (read-only ones, or bad input).

    `envs` gives each command its own extra environment.
    """
    assert METAXY.exists(), f"{METAXY} is missing: run `make test` (it syncs the venv)."
    extra = list(envs) if envs is not None else [env or {}] * len(commands)
    started = [
        subprocess.Popen(
            [str(METAXY), *args],
            cwd=cwd,
            env=_environ(more),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, more in zip(commands, extra, strict=True)
    ]
    results = []
    for process in started:
        out, err = process.communicate(timeout=180)
        results.append(Result(process.returncode, out, err))
    return results


def call_metaxy(*args: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The console script's entry point, in this process."""
    monkeypatch.chdir(cwd)
    for name in [n for n in os.environ if n.startswith("METAXY_")]:
        monkeypatch.delenv(name)
    # Output is piped here: 120 columns, as in a subprocess (pytest-xdist workers set COLUMNS).
    monkeypatch.delenv("COLUMNS", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class Project:
    """A directory with a metaxy.toml and a filled store (`kind`: duckdb or delta)."""

    path: Path
    kind: str
    monkeypatch: pytest.MonkeyPatch

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """The console script in a subprocess."""
        return run_metaxy(*args, cwd=self.path, env=env)

    def run_parallel(self, *commands: Sequence[str]) -> list[Result]:
        """Independent commands as concurrent subprocesses."""
        return run_parallel(commands, cwd=self.path)

    def call(self, *args: str) -> Result:
        """The console script's entry point in this process."""
        return call_metaxy(*args, cwd=self.path, monkeypatch=self.monkeypatch)

    def run_on_duckdb(self, *args: str) -> Result:
        """A subprocess on the DuckDB project, in this process on Delta (each start costs ~3 s)."""
        return self.run(*args) if self.kind == "duckdb" else self.call(*args)

    def open(self, graph: mx.FeatureGraph | None = None) -> mx.MetadataStore:
        """The project's store, opened in this process (close it before running metaxy)."""
        config = load_config(cwd=self.path)
        return config.open_store(graph=graph or config.load_graph())

    def snapshot(self) -> dict[str, int]:
        """Rows of every table, history and audit included: 'nothing changed' compares these."""
        with self.open() as store:
            counts = {k.path: store.history(k).height for k in store.graph.keys}
            return counts | {
                "snapshots": store.graph_snapshots().height,
                "audit": store.audit_log().height,
            }


def write_config(path: Path, uri: str, graph: str = "tests.cli.features:VIDEO") -> None:
    path.joinpath("metaxy.toml").write_text(
        f'graph = "{graph}"\nstore = "main"\n\n[stores.main]\nuri = "{uri}"\n'
    )


def fill_video(store: mx.MetadataStore, n: int = 6) -> None:
    """Every feature of the video graph computed for `n` samples, by run 'run-1'."""
    compute_increment(store, "video", video.VALUES["video"], samples=video.inputs(n))
    for key in ("crop", "face_detection", "transcript"):
        compute_increment(store, key, video.VALUES[key])


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One filled project per store kind, copied by each test that needs one."""
    made: dict[str, Path] = {}
    for kind, uri in STORE_URIS.items():
        path = tmp_path_factory.mktemp(f"template-{kind}")
        write_config(path, uri)
        with load_config(cwd=path).open_store(graph=video.graph()) as store:
            fill_video(store)
        made[kind] = path
    return made


def _copy(filled: dict[str, Path], kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "project"
    shutil.copytree(filled[kind], target)
    return Project(target, kind, monkeypatch)


@pytest.fixture(params=["duckdb", "delta"])
def project(
    request: pytest.FixtureRequest,
    filled: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Project:
    """The video graph, six samples, on a DuckDB file or in a Delta directory."""
    return _copy(filled, request.param, tmp_path, monkeypatch)


@pytest.fixture
def duckdb_project(
    filled: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    """The video graph on a DuckDB file only (for commands whose backend does not matter)."""
    return _copy(filled, "duckdb", tmp_path, monkeypatch)
