"""`__all__` is exactly the public surface of each package, sorted."""

import importlib
import inspect
import types

import pytest


def public_names(package: types.ModuleType) -> set[str]:
    """Names without a leading underscore, minus submodules bound by the import system.

    A module re-exported under a public alias (`columns` -> `metaxy_core._columns`) is
    public surface; `metaxy_core.stores` bound because it was imported is not.
    """
    for name in getattr(package, "__all__", ()):  # load the lazily loaded stores
        getattr(package, name)
    names = set()
    for name, value in vars(package).items():
        if name.startswith("_"):
            continue
        if isinstance(value, types.ModuleType) and value.__name__ == f"{package.__name__}.{name}":
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("package_name", ["metaxy_core", "metaxy_dagster"])
def test_all_is_the_sorted_public_surface(package_name):
    package = importlib.import_module(package_name)
    if not hasattr(package, "__all__"):
        pytest.skip(f"{package_name} has no __all__ yet")
    exported = list(package.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    assert set(exported) == public_names(package)
    for name in exported:
        assert getattr(package, name) is not None


def test_importing_submodules_does_not_change_the_surface():
    import metaxy_core

    before = public_names(metaxy_core)
    importlib.import_module("metaxy_core.testing")
    importlib.import_module("metaxy_core.versioning")
    assert public_names(metaxy_core) == before == set(metaxy_core.__all__)


def test_every_error_derives_from_metaxy_error():
    import metaxy_core as mx

    errors = [getattr(mx, n) for n in mx.__all__ if n.endswith("Error")]
    assert len(errors) >= 9
    for error in errors:
        assert issubclass(error, mx.MetaxyError), error


def test_core_never_imports_dagster():
    import subprocess
    import sys

    code = "import sys, metaxy_core, metaxy_core.testing; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("package_name", ["metaxy_core", "metaxy_dagster"])
def test_exported_names_have_google_docstrings(package_name):
    """Ruff's pydocstyle checks docstring form but skips names defined in `_private` modules."""
    package = importlib.import_module(package_name)
    missing = []
    for name in package.__all__:
        value = getattr(package, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        if not doc or not doc.strip():
            missing.append(f"{name}: no docstring")
        elif inspect.isfunction(value) and inspect.signature(value).parameters:
            if "Args:" not in doc:
                missing.append(f"{name}: no Args section")
            if "Example" not in doc:
                missing.append(f"{name}: no example")
    assert not missing, "\n".join(missing)


def test_importing_the_core_loads_no_store_engine():
    # Every `metaxy` command imports metaxy_core: the DuckDB, Delta and SQL stores (and
    # duckdb, pyarrow, deltalake, ibis) load only when used.
    import subprocess
    import sys

    code = (
        "import sys, metaxy_core, metaxy_core.cli\n"
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'deltalake', 'ibis') if m in sys.modules))\n"
        "metaxy_core.DuckDBStore\n"
        "print('duckdb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
