"""One error root at the store boundary: engine errors leave as `StoreError`, cause attached.

Polars, narwhals, DuckDB, deltalake and pyarrow raise their own exception types, and a pyo3
panic (`PanicException`) is not even an `Exception`. Every public store method is wrapped so
that what reaches the user is a `MetaxyError` naming the store, the method and the feature,
with the original error chained as `__cause__` (and quoted in the message).
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from metaxy_core._errors import MetaxyError, StoreError
from metaxy_core._spec import key_of

F = TypeVar("F", bound=Callable[..., Any])
_GUARDED = "__metaxy_guarded__"


def _is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException derives from BaseException; it has no importable home."""
    return type(exc).__name__ == "PanicException"


def _feature_of(args: tuple[Any, ...]) -> str:
    if not args:
        return ""
    try:
        return f" on feature {key_of(args[0])}"
    except Exception:  # the first argument is not a feature (a batch key, a store...)
        return ""


def _where(store: Any) -> str:
    location = getattr(store, "uri", None) or getattr(store, "path", None)
    return f"{type(store).__name__}({str(location)!r})" if location else type(store).__name__


def store_error(store: Any, method: str, args: tuple[Any, ...], exc: BaseException) -> StoreError:
    """The `StoreError` a foreign exception becomes at the public boundary."""
    name = "__init__" if method == "__init__" else method
    action = "opening the store" if name == "__init__" else f"{name}(){_feature_of(args)}"
    return StoreError(f"{_where(store)}: {action} failed: {type(exc).__name__}: {exc}")


def guarded(method: F) -> F:
    """Wrap `method` so that only `MetaxyError`s (and interrupts) leave it."""
    if getattr(method, _GUARDED, False):
        return method

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MetaxyError:
            raise
        except Exception as exc:
            raise store_error(self, method.__name__, args, exc) from exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit pass; panics do not
            if not _is_panic(exc):
                raise
            raise store_error(self, method.__name__, args, exc) from exc

    setattr(call, _GUARDED, True)
    return call  # type: ignore[return-value]


def guard_public_methods(cls: type) -> None:
    """Wrap the public methods (and `__init__`) a class defines itself."""
    for name, member in list(vars(cls).items()):
        if (name.startswith("_") and name != "__init__") or not inspect.isfunction(member):
            continue
        setattr(cls, name, guarded(member))
