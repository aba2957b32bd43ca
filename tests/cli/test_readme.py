"""The README's "Command line" session runs as shown, on the graph of "API at a glance"."""

import re
import shlex
import sys
from pathlib import Path

import polars as pl

from metaxy_core.cli import load_config
from tests.cli.conftest import call_metaxy
from tests.test_readme import README, glance_block

BUMP = (
    'fields=["audio", "frames"], deps=[Video]',
    'fields=["audio", mx.FieldSpec("frames", code_version="2")], deps=[Video]',
)
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"accept-[0-9a-f]{12}"), "accept-<id>"),
    (re.compile(r"feature graph [0-9a-f]{16}"), "feature graph <project version>"),
]


def section() -> str:
    return README.read_text().split("## Command line\n", 1)[1].split("\n## ", 1)[0]


def block(kind: str) -> str:
    return re.search(rf"```{kind}\n(.*?)```", section(), re.S).group(1)


def session() -> list[tuple[str, list[str]]]:
    """(command line, expected output lines) for each `$ metaxy ...` of the console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block("console").splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def normal(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, mask in VOLATILE:
            line = pattern.sub(mask, line)
        out.append(line.rstrip())
    return out


def prepare(path: Path) -> None:
    """The README's setup: the glance graph as video_features.py, two samples, then the bump."""
    features = glance_block().split("store = mx.MemoryStore")[0]
    (path / "video_features.py").write_text(features)
    (path / "pyproject.toml").write_text(block("toml"))
    config = load_config(cwd=path, environ={})
    with config.open_store(graph=config.load_graph()) as store:
        inputs = pl.DataFrame(
            {"sample_id": ["a", "b"], "audio": ["h1", "h2"], "frames": ["h3", "h4"]}
        )
        rows = store.resolve_update("video", samples=inputs).new
        store.write("video", rows.with_columns(path=pl.col("sample_id") + ".mp4"))
        values = {
            "crop": {"crop_path": "c.mp4"},
            "face_detection": {"n_faces": 1},
            "transcript": {"text": "hi"},
        }
        for key, columns in values.items():
            rows = store.resolve_update(key).new
            store.write(key, rows.with_columns(pl.lit(v).alias(k) for k, v in columns.items()))
    assert BUMP[0] in features
    (path / "video_features.py").write_text(features.replace(*BUMP))


def test_command_line_session_prints_what_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_graph adds the project's directory
    prepare(tmp_path)
    steps = session()
    assert [s.split()[:2] for s, _ in steps] == [
        ["metaxy", "graph"],
        ["metaxy", "status"],
        ["metaxy", "plan"],
        ["metaxy", "why"],
        ["metaxy", "accept"],
        ["metaxy", "plan"],
    ]
    for command, expected in steps:
        monkeypatch.delitem(sys.modules, "video_features", raising=False)  # the edited file
        result = call_metaxy(*shlex.split(command)[1:], cwd=tmp_path, monkeypatch=monkeypatch)
        assert result.code == 0, (command, result.err)
        assert normal(result.out.splitlines()) == normal(expected), command
