"""The tools stay green (ruff, pyright strict) and the layer rules hold.

The tools run from this interpreter's environment, so `make test` checks what `make lint`
and `make typecheck` check. Layer rules are read from the source with `ast`, imports inside
functions included.
"""

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("metaxy_core", "metaxy_dagster")
# example_project joins these once its owner has made it lint-clean.
LINTED = (*PACKAGES, "tests")


def run_tool(tool: str, *args: str) -> None:
    """Run a tool from the venv in the repository root; fail with its output if it fails."""
    executable = BIN / tool
    assert executable.exists(), f"{executable} is missing: run `make test` (it syncs the venv)."
    done = subprocess.run(
        [str(executable), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"`{tool} {' '.join(args)}` failed:\n{done.stdout}{done.stderr}"


def test_ruff_check_is_clean():
    run_tool("ruff", "check", *LINTED)


def test_ruff_format_is_clean():
    run_tool("ruff", "format", "--check", *LINTED)


def test_pyright_strict_on_core_is_clean():
    run_tool("pyright", "metaxy_core")


# -- layer rules ---------------------------------------------------------------------------


def imported_names(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `source` imports; `from a import b` gives `a.b`.

    `module` is the dotted name of the file (`pkg.__init__` for a package), to resolve
    relative imports.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def private_attributes(source: str, packages: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(line, `alias._name`) for private attributes read off an imported package (`mx._x`)."""
    tree = ast.parse(source)
    aliases = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in packages
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
        ):
            yield node.lineno, f"{aliases[node.value.id]}.{node.attr}"


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_private_path(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[1:])


@dataclass(frozen=True)
class Rule:
    """Modules for which `governs(module)` holds must not import names `forbids(name)`."""

    text: str
    governs: Callable[[str], bool]
    forbids: Callable[[str], bool]


RULES = (
    Rule(
        "metaxy_core never imports dagster",
        lambda m: _top(m) == "metaxy_core",
        lambda n: _top(n) == "dagster" or _top(n).startswith("dagster_"),
    ),
    Rule(
        "only metaxy_core/stores/_duckdb* imports duckdb",
        lambda m: not m.startswith("metaxy_core.stores._duckdb"),
        lambda n: _top(n) == "duckdb",
    ),
    Rule(
        "only metaxy_core/stores/_delta* imports deltalake",
        lambda m: not m.startswith("metaxy_core.stores._delta"),
        lambda n: _top(n) == "deltalake",
    ),
    Rule(
        "only metaxy_core/stores/_sql* imports ibis",
        lambda m: not m.startswith("metaxy_core.stores._sql"),
        lambda n: _top(n) == "ibis",
    ),
    Rule(
        "the logic under the stores never imports a store class back (no import circle)",
        lambda m: (
            m
            in {f"metaxy_core.stores._{n}" for n in ("resolve", "rows", "storage", "system_tables")}
        ),
        lambda n: (
            n.startswith("metaxy_core.stores.")
            and n.split(".")[2] not in ("_resolve", "_writes", "_columns", "_storage")
        ),
    ),
    Rule(
        "metaxy_dagster imports neither metaxy_core._* nor dagster._*",
        lambda m: _top(m) == "metaxy_dagster",
        lambda n: _top(n) in ("metaxy_core", "dagster") and _is_private_path(n),
    ),
    Rule(
        "no `from __future__ import annotations` in metaxy_dagster (Dagster reads annotations)",
        lambda m: _top(m) == "metaxy_dagster",
        lambda n: n == "__future__.annotations",
    ),
)


def violations(source: str, module: str) -> list[str]:
    """Every layer rule `source` (the file of `module`) breaks, as readable lines."""
    found = [
        f"{module}:{line}: imports {name} ({rule.text})"
        for line, name in imported_names(source, module)
        for rule in RULES
        if rule.governs(module) and rule.forbids(name)
    ]
    if _top(module) == "metaxy_dagster":
        found += [
            f"{module}:{line}: reads {name} (metaxy_dagster uses public names only)"
            for line, name in private_attributes(source, ("metaxy_core", "dagster"))
        ]
    return found


def package_modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def test_packages_keep_the_layer_rules():
    modules = list(package_modules())
    assert len(modules) > 20
    found = [v for module, path in modules for v in violations(path.read_text(), module)]
    assert not found, "Layer rules broken:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("metaxy_core._graph", "import dagster as dg"),
        ("metaxy_core.stores._base", "def f():\n    from dagster_duckdb import DuckDBResource"),
        ("metaxy_core.stores._memory", "import duckdb"),
        ("metaxy_dagster._resources", "from duckdb import connect"),
        ("metaxy_core.stores._duckdb", "from deltalake import DeltaTable"),
        ("metaxy_core.stores._delta", "import ibis"),
        ("metaxy_core.stores._resolve", "from metaxy_core.stores._base import MetadataStore"),
        ("metaxy_core.stores._rows", "if TYPE_CHECKING:\n    from ._base import MetadataStore"),
        ("metaxy_dagster._assets", "from metaxy_core._columns import WRITE_ID"),
        ("metaxy_dagster._assets", "from metaxy_core import _columns"),
        ("metaxy_dagster._assets", "import metaxy_core.stores._delta"),
        ("metaxy_dagster._assets", "from dagster._core.definitions import AssetKey"),
        ("metaxy_dagster._assets", "import metaxy_core as mx\nmx._graph.FeatureGraph"),
        ("metaxy_dagster._assets", "from __future__ import annotations"),
    ],
)
def test_layer_rules_catch_a_breach(module, source):
    assert violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("metaxy_core.stores._duckdb_engine", "import duckdb\nfrom duckdb.func import ARROW"),
        ("metaxy_core.stores._delta", "from deltalake import DeltaTable"),
        ("metaxy_core.stores.__init__", "from ._duckdb import DuckDBStore"),
        ("metaxy_dagster._checks", "import dagster as dg\nfrom metaxy_core import columns as C"),
        ("metaxy_dagster._assets", "import metaxy_core as mx\nmx.FeatureGraph.__name__"),
        ("metaxy_core._spec", "from __future__ import annotations"),
    ],
)
def test_layer_rules_allow_the_sanctioned_imports(module, source):
    assert violations(source, module) == []


def test_imported_names_resolve_relative_imports():
    source = "from ._duckdb import DuckDBStore\nfrom .. import _columns\nimport polars as pl"
    assert list(imported_names(source, "metaxy_core.stores.__init__")) == [
        (1, "metaxy_core.stores._duckdb.DuckDBStore"),
        (2, "metaxy_core._columns"),
        (3, "polars"),
    ]
