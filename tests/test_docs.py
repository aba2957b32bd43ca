"""The documentation site builds without warnings, and every guide's code runs as written."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs").glob("*.md"))


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [
            str(mkdocs if mkdocs.exists() else shutil.which("mkdocs")),
            "build",
            "--strict",
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "core" / "index.html").exists()


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_code_block_of_a_guide_runs(guide, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(), re.S)
    monkeypatch.chdir(tmp_path)  # guides that write files write them here
    namespace = {"__name__": f"docs_{guide.stem}"}
    for block in blocks:
        exec(compile(block, str(guide), "exec"), namespace)
    capsys.readouterr()
