"""One error root at the public boundary: foreign errors leave as `MetaxyError`, cause attached.

Polars, narwhals, DuckDB, deltalake and pyarrow raise their own exception types, Python
raises `TypeError`/`KeyError` on arguments of the wrong shape, and a pyo3 panic
(`PanicException`) is not even an `Exception`. Public classes and functions are wrapped so
that what reaches the user is a `MetaxyError` naming where it happened (for stores: the
store, the method and the feature), with the original error chained as `__cause__` and
quoted in the message.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from metaxy_core._errors import MetaxyError, SpecError, StoreError

F = TypeVar("F", bound=Callable[..., Any])
# Builds the error a foreign exception becomes: (self or None, callable name, args, exc).
ErrorFactory = Callable[[Any, str, tuple[Any, ...], BaseException], MetaxyError]
_GUARDED = "__metaxy_guarded__"


def _is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException derives from BaseException; it has no importable home."""
    return type(exc).__name__ == "PanicException"


def _feature_of(args: tuple[Any, ...]) -> str:
    from metaxy_core._spec import key_of  # the spec module is guarded by this one

    if not args:
        return ""
    try:
        return f" on feature {key_of(args[0])}"
    except Exception:  # the first argument is not a feature (a batch key, a store...)
        return ""


def store_error(store: Any, method: str, args: tuple[Any, ...], exc: BaseException) -> MetaxyError:
    """The `StoreError` a foreign exception in a store method becomes."""
    location = (
        None
        if isinstance(store, type)
        else getattr(store, "uri", None) or getattr(store, "path", None)
    )
    where = f"{_name(store)}({str(location)!r})" if location else _name(store)
    action = "opening the store" if method == "__init__" else f"{method}(){_feature_of(args)}"
    detail = f"{type(exc).__name__}: {exc}{_explained(store, exc)}"
    return StoreError(f"{where}: {action} failed: {detail}")


def _explained(store: Any, exc: BaseException) -> str:
    """What the store itself can add about a failure (DeltaStore: damaged data files)."""
    explain = getattr(store, "_explain_failure", None)
    if not callable(explain):
        return ""
    try:
        return str(explain(exc))
    except Exception:  # an explanation must never hide the error it explains
        return ""


def _name(owner: Any) -> str:
    """The class name of an instance, or of a class itself (for class methods)."""
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def argument_error(owner: Any, name: str, args: tuple[Any, ...], exc: BaseException) -> MetaxyError:
    """The `SpecError` a foreign exception in a spec, graph or helper becomes."""
    if owner is None:
        where = name
    else:
        where = _name(owner) if name == "__init__" else f"{_name(owner)}.{name}"
    return SpecError(f"{where}: invalid arguments ({type(exc).__name__}: {exc}).")


def guarded(function: F, error: ErrorFactory = argument_error, *, method: bool = True) -> F:
    """Wrap `function` so that only `MetaxyError`s (and interrupts) leave it."""
    if getattr(function, _GUARDED, False):
        return function

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except MetaxyError:
            raise
        except Exception as exc:
            owner, rest = (args[0], args[1:]) if method and args else (None, args)
            raise error(owner, function.__name__, rest, exc) from exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit pass; panics do not
            if not _is_panic(exc):
                raise
            owner, rest = (args[0], args[1:]) if method and args else (None, args)
            raise error(owner, function.__name__, rest, exc) from exc

    setattr(call, _GUARDED, True)
    return call  # type: ignore[return-value]


def guarded_function(function: F) -> F:
    """`guarded` for a module-level function (no `self` to name)."""
    return guarded(function, method=False)


def guard_public_methods(cls: type, error: ErrorFactory = argument_error) -> None:
    """Wrap the public methods, class methods and `__init__` a class defines itself."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") and name not in ("__init__", "__post_init__"):
            continue
        if inspect.isfunction(member):
            setattr(cls, name, guarded(member, error))
        elif isinstance(member, classmethod | staticmethod):
            descriptor = cast(Any, member)  # pyright cannot see through descriptor generics
            # A class method's first argument is the class: it names the owner.
            is_class = isinstance(member, classmethod)
            inner = guarded(descriptor.__func__, error, method=is_class)
            setattr(cls, name, type(descriptor)(inner))
