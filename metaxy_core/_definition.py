"""A feature's spec with its typed columns: what a graph holds per feature."""

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from metaxy_core._canonical import check_id_columns
from metaxy_core._errors import GraphError
from metaxy_core._feature import Feature
from metaxy_core._guard import guard_public_methods
from metaxy_core._spec import FeatureSpec


@dataclass(frozen=True)
class FeatureDefinition:
    """A feature's spec with its typed columns (id and user columns) and class, if any."""

    spec: FeatureSpec
    columns: Mapping[str, pl.DataType]
    feature_class: type[Feature] | None = None
    # Id columns typed by default (String), not declared: a graph gives them the type their
    # upstream has through an identity, expansion or aggregation dep.
    inferred_ids: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        check_id_columns(self.spec, self.columns)  # one canonical text per id dtype

    @property
    def user_columns(self) -> dict[str, pl.DataType]:
        """Columns that are neither id columns nor system columns."""
        return {c: d for c, d in self.columns.items() if c not in self.spec.id_columns}


def as_definition(item: Any) -> FeatureDefinition:
    """A definition from a Feature class, a bare FeatureSpec (string ids) or a definition."""
    if isinstance(item, FeatureDefinition):
        return item
    if isinstance(item, FeatureSpec):
        ids = {c: pl.String() for c in item.id_columns}
        return FeatureDefinition(item, ids, inferred_ids=frozenset(ids))
    if inspect.isclass(item) and issubclass(item, Feature) and item is not Feature:
        undeclared = frozenset(c for c in item.spec.id_columns if c not in item.model_fields)
        return FeatureDefinition(item.spec, item.column_dtypes(), item, undeclared)
    raise GraphError(f"Cannot add {item!r} to a graph: pass Feature classes or FeatureSpecs.")


guard_public_methods(FeatureDefinition)  # wrong argument shapes raise SpecError
