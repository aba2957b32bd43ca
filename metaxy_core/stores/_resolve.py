"""Resolving an increment: the provenance a feature should have against what a store holds.

Written against `StoreReads` (a store's graph, engine, hash settings and latest rows), never
against a store class, so every backend resolves increments the same way.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._canonical import input_text
from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import WriteValidationError
from metaxy_core._filters import Filter
from metaxy_core._graph import FeatureGraph
from metaxy_core._increments import Increment, diff, empty_increment, split_lists
from metaxy_core._keys import FeatureKey
from metaxy_core._one_pass_diff import diff_in_one_join
from metaxy_core._spec import FeatureDep, FeatureSpec
from metaxy_core.stores import _writes as W
from metaxy_core.versioning._engine import Engine, apply_filters
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine
from metaxy_core.versioning._provenance import (
    expected_provenance,
    input_column,
    root_provenance,
)

# A full diff hashes the sample provenance of the rows it keeps only, not of every sample
# (switch for tests: both ways give the same increment).
DEFER_SAMPLE_PROVENANCE = True


class StoreReads(Protocol):
    """What resolving an increment and stamping a write read from a store."""

    @property
    def graph(self) -> FeatureGraph:
        """The feature graph."""
        ...

    @property
    def engine(self) -> Engine:
        """The engine the store's scans run in."""
        ...

    @property
    def hash_settings(self) -> HashSettings:
        """The row hash settings."""
        ...

    @property
    def stores_current_view(self) -> bool:
        """True if `latest` reads a stored view (no need to cache it within a resolve)."""
        ...

    def has_feature(self, feature: Any) -> bool:
        """True if the feature was ever written."""
        ...

    def latest(self, feature: Any, *, include_deleted: bool = False) -> nw.LazyFrame[Any] | None:
        """The latest row per sample, lazily (None if never written)."""
        ...


def resolve_increment(
    store: StoreReads, feature: Any, samples: Any, filters: Sequence[Filter]
) -> Increment:
    """New, stale and orphaned samples of `feature` (see `MetadataStore.resolve_update`)."""
    spec = store.graph.spec(feature)
    written = store.has_feature(spec.key)
    # The usual case: one join classifies every sample, and only the increment is collected.
    # It compares field provenance, so the sample provenance is hashed for the kept rows only.
    one_join = written and not filters and spec.parent_key == spec.id_columns
    sample = not one_join or spec.is_root or not DEFER_SAMPLE_PROVENANCE
    expected = expected_rows(store, spec.key, samples, sample=sample)
    if expected is None:
        missing = [
            d.feature for d in spec.deps if not d.optional and not store.has_feature(d.feature)
        ]
        return empty_increment(spec, missing)
    engine = store.engine
    if not written:
        return _first_increment(store, spec, _filtered(store, spec, expected, filters))
    if one_join:
        current = current_rows(store, spec.key)
        settings = None if sample else store.hash_settings
        new, stale, orphaned = diff_in_one_join(spec, expected, current, engine, settings)
        return Increment(spec.key, new, stale, orphaned)
    try:
        # new, stale and orphaned all read both sides: compute each side once.
        expected = engine.cache(expected)
        current = current_rows(store, spec.key)
        if not store.stores_current_view:
            current = engine.cache(current)
        new, stale, orphaned = diff(spec, _filtered(store, spec, expected, filters), current)
        if filters:  # orphans have no upstream row: only predicates on ids can scope them
            _, _, orphaned = diff(spec, expected, current)
            on_ids = [f for f in filters if set(f.columns) <= set(spec.id_columns)]
            orphaned = apply_filters(engine, orphaned, on_ids, where=f"orphans of {spec.key}")
        return collect_increment(spec.key, new, stale, orphaned)
    finally:
        engine.release()


def collect_increment(
    key: FeatureKey,
    new: nw.LazyFrame[Any],
    stale: nw.LazyFrame[Any],
    orphaned: nw.LazyFrame[Any],
) -> Increment:
    """The three sides of a diff collected into polars (stale's member lists split)."""
    return Increment(
        key,
        new.collect(backend="polars").to_native(),
        split_lists(stale.collect(backend="polars").to_native()),
        orphaned.collect(backend="polars").to_native(),
    )


def _first_increment(
    store: StoreReads, spec: FeatureSpec, expected: nw.LazyFrame[Any]
) -> Increment:
    """A feature never written: every expected sample is new, in one pass (no diff, no cache)."""
    new = expected.collect(backend="polars").to_native()
    stale = new.clear().with_columns(
        pl.lit(None, pl.List(pl.String)).alias(C.STALE_FIELDS),
        pl.lit(None, pl.List(pl.String)).alias(C.STALE_REASONS),
    )
    # Nothing is stored: no orphans, typed as the engine returns ids (as `new` came back).
    declared = store.graph.definition(spec.key).columns
    typed = {c: new.schema[c] if c in new.schema else declared[c] for c in spec.id_columns}
    return Increment(spec.key, new, stale, pl.DataFrame(schema=typed))


# Restricts an upstream's latest rows to some samples (an incremental resolve's candidates).
Restriction = Callable[[FeatureDep, nw.LazyFrame[Any]], nw.LazyFrame[Any]]


def expected_rows(
    store: StoreReads,
    key: FeatureKey,
    samples: Any,
    *,
    only: Restriction | None = None,
    sample: bool = True,
) -> nw.LazyFrame[Any] | None:
    """The provenance every sample of `key` should have now (None: an upstream is missing).

    Roots take it from the user's `samples`; other features from their upstreams' latest
    rows, restricted by `only` if given, without the sample provenance if not `sample`.
    """
    spec = store.graph.spec(key)
    if spec.is_root:
        # The samples are a polars frame already: hash them there (every engine hashes to
        # the same bytes, polars fastest), then hand the rows to the store's engine.
        polars = PolarsEngine()
        lazy = polars.lazy(_root_samples(store.graph.definition(key), samples))
        hashed = root_provenance(store.graph, key, lazy, polars, store.hash_settings)
        return store.engine.lazy(hashed.collect(backend="polars").to_native())
    upstreams: dict[FeatureKey, nw.LazyFrame[Any]] = {}
    for dep in spec.deps:
        frame = store.latest(dep.feature)
        if frame is None:
            if not dep.optional:
                return None
            frame = store.engine.lazy(_empty_system(store, dep.feature))
        if only is not None:
            frame = only(dep, frame)
        upstreams[dep.feature] = _with_every_field(store, dep.feature, frame)
    return expected_provenance(
        store.graph, key, upstreams, store.engine, store.hash_settings, sample=sample
    )


def _with_every_field(
    store: StoreReads, key: FeatureKey, frame: nw.LazyFrame[Any]
) -> nw.LazyFrame[Any]:
    """Rows written before a field was added to `key` have no data version for it: null.

    Provenance leaves null parents out, so downstream features see no change until the
    upstream is rewritten with the new field.
    """
    present = set(frame.columns)
    missing = [
        C.data_version_column(f)
        for f in store.graph.spec(key).field_keys
        if C.data_version_column(f) not in present
    ]
    return (
        frame.with_columns(nw.lit(None, nw.String).alias(c) for c in missing) if missing else frame
    )


def _root_samples(definition: FeatureDefinition, samples: Any) -> pl.DataFrame:
    """A root's samples, validated: its ids plus one input version column per field."""
    spec = definition.spec
    key = spec.key
    if samples is None:
        raise WriteValidationError(
            f"Feature {key} is a root: pass samples= with its id columns and one input "
            f"version column per field {list(spec.field_keys)}."
        )
    what = f"samples for {key}"
    frame = W.to_polars(samples, what=what)
    W.validate_ids(frame, spec.id_columns, what=what)
    missing = [f for f in spec.field_keys if f not in frame.columns]
    if missing:
        raise WriteValidationError(f"{what}: missing input column(s) {missing} (one per field).")
    ids = {c: definition.columns[c] for c in spec.id_columns}
    frame = W.coerce_columns(frame, FeatureDefinition(spec, ids), what=what)
    # Engines print values differently: inputs become their canonical text here, in
    # polars, so that every store hashes the same bytes.
    texts = [
        input_text(f, frame.schema[f], what=what).alias(input_column(f)) for f in spec.field_keys
    ]
    return frame.select(*spec.id_columns, *spec.field_keys, *texts)


def _empty_system(store: StoreReads, key: FeatureKey) -> pl.DataFrame:
    """An optional upstream never written: no rows, but the columns provenance and filters read."""
    spec = store.graph.spec(key)
    schema = dict(store.graph.definition(key).columns)
    schema |= C.system_dtypes(spec.field_keys)  # dep filters may read any system column
    return pl.DataFrame(schema=schema)


def current_rows(store: StoreReads, key: FeatureKey) -> nw.LazyFrame[Any]:
    """The stored provenance and code versions per live sample (empty if never written)."""
    spec = store.graph.spec(key)
    frame = store.latest(key)
    columns = [
        *spec.id_columns,
        *(C.provenance_column(f) for f in spec.field_keys),
        *(C.code_version_column(f) for f in spec.field_keys),
    ]
    if frame is None:
        schema = {c: pl.String() for c in columns} | dict(store.graph.definition(key).columns)
        return store.engine.lazy(pl.DataFrame(schema={c: schema[c] for c in columns}))
    present = set(frame.columns)
    # A field added since the last write has no stored provenance yet: it reads as null.
    return frame.select(
        *(nw.col(c) if c in present else nw.lit(None, nw.String).alias(c) for c in columns)
    )


def _filtered(
    store: StoreReads,
    spec: FeatureSpec,
    expected: nw.LazyFrame[Any],
    filters: Sequence[Filter],
) -> nw.LazyFrame[Any]:
    """Apply target filters to the expected rows (key and carried upstream columns)."""
    where = f"resolve_update of {spec.key} (filters read the increment's columns)"
    return apply_filters(store.engine, expected, filters, where=where)
