"""Feature classes: a spec plus a pydantic model whose fields are the user columns."""

import datetime as dt
import types
from typing import Any, ClassVar, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel, ConfigDict

from metaxy_core._errors import SpecError
from metaxy_core._keys import validate_column_name
from metaxy_core._spec import FeatureSpec

_SCALARS: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
    bytes: pl.Binary(),
    dt.datetime: pl.Datetime("us", "UTC"),
    dt.date: pl.Date(),
}


def polars_dtype(annotation: Any) -> pl.DataType:
    """The polars dtype a user column annotation maps to (`str | None` -> String)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return polars_dtype(args[0])
    if origin is list:
        (inner,) = get_args(annotation) or (str,)
        return pl.List(polars_dtype(inner))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise SpecError(
        f"Unsupported column type {annotation!r}: use str, int, float, bool, bytes, "
        "datetime, date, list[...] or Optional of those."
    )


class Feature(BaseModel):
    """Base class of user features: declare the spec as a class keyword.

    The pydantic fields are the feature's user columns (what Dagster shows as the
    column schema). Id columns may be declared as fields to type them; undeclared id
    columns are strings. No global registry: pass the classes to `FeatureGraph`.

    Example:
        >>> class Video(Feature, spec=FeatureSpec("video", id_columns=["sample_id"],
        ...                                       fields=["audio", "frames"])):
        ...     path: str
        >>> Video.spec.key.path
        'video'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    spec: ClassVar[FeatureSpec]

    def __init_subclass__(cls, *, spec: FeatureSpec | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if spec is None:
            raise SpecError(
                f"Feature class {cls.__name__} needs a spec: "
                f"class {cls.__name__}(Feature, spec=FeatureSpec(...))."
            )
        if not isinstance(spec, FeatureSpec):
            raise SpecError(f"Feature class {cls.__name__}: spec must be a FeatureSpec.")
        cls.spec = spec

    @classmethod
    def column_dtypes(cls) -> dict[str, pl.DataType]:
        """Id columns and user columns with their polars dtypes."""
        declared: dict[str, pl.DataType] = {}
        for name, f in cls.model_fields.items():
            validate_column_name(name, what=f"Feature {cls.spec.key}")
            try:
                declared[name] = polars_dtype(f.annotation)
            except SpecError as exc:  # say which column of which feature
                raise SpecError(f"Feature {cls.spec.key}, column {name!r}: {exc}") from None
        ids = {c: declared.get(c, pl.String()) for c in cls.spec.id_columns}
        return ids | {n: d for n, d in declared.items() if n not in ids}
