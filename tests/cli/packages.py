"""Installed packages as Python sees them, made in a temporary directory (no pip, no mocks)."""

import textwrap
from pathlib import Path


def make_package(root: Path, name: str, code: str, entry: str) -> None:
    """An installed package as Python sees one: its module plus a .dist-info with entry points."""
    package = root / name.replace("-", "_")
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "features.py").write_text(textwrap.dedent(code))
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[metaxy.features]\n{name} = {entry}\n")
