"""Frozen specs: fields, field deps, feature deps with lineage, features."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from metaxy_core._errors import SpecError
from metaxy_core._filters import parse_filter
from metaxy_core._guard import guard_public_methods
from metaxy_core._keys import FeatureKey, validate_column_name, validate_field_key

LineageKind = Literal["identity", "aggregation", "expansion"]
KeyLike = str | Sequence[str] | FeatureKey


def key_of(feature: Any) -> FeatureKey:
    """Accept a key, a key string/parts, a spec, or a feature class."""
    spec = getattr(feature, "spec", None)
    if isinstance(spec, FeatureSpec):
        return spec.key
    if isinstance(feature, FeatureSpec):
        return feature.key
    return FeatureKey.of(feature)


@dataclass(frozen=True)
class Lineage:
    """How rows of an upstream map to rows of the feature.

    `identity` is 1:1 on the id columns; `aggregation(on=...)` is N:1 (one feature row per
    group of upstream rows); `expansion(on=...)` is 1:N (each upstream row yields several
    feature rows that share the `on` columns).

    Example:
        >>> Lineage.aggregation(on=["speaker_id"]).kind
        'aggregation'
    """

    kind: LineageKind = "identity"
    on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("identity", "aggregation", "expansion"):
            raise SpecError(
                f"Unknown lineage kind {self.kind!r}: use identity, aggregation or expansion."
            )
        on = (self.on,) if isinstance(self.on, str) else tuple(self.on)
        object.__setattr__(
            self, "on", tuple(validate_column_name(c, what=f"{self.kind} lineage") for c in on)
        )
        if self.kind == "identity" and self.on:
            raise SpecError("Identity lineage takes no 'on' columns.")
        if self.kind != "identity" and not self.on:
            raise SpecError(f"{self.kind.capitalize()} lineage needs 'on' columns.")

    @classmethod
    def identity(cls) -> "Lineage":
        """1:1 on the id columns."""
        return cls("identity")

    @classmethod
    def aggregation(cls, *, on: Sequence[str]) -> "Lineage":
        """N:1: one feature row per group of upstream rows sharing `on`."""
        return cls("aggregation", tuple(on))

    @classmethod
    def expansion(cls, *, on: Sequence[str]) -> "Lineage":
        """1:N: each upstream row (keyed by `on`) yields several feature rows."""
        return cls("expansion", tuple(on))


@dataclass(frozen=True, init=False)
class FieldDep:
    """A field's dependency on fields of one upstream feature (`fields=None`: all of them)."""

    feature: FeatureKey
    fields: tuple[str, ...] | None

    def __init__(self, feature: Any, fields: Sequence[str] | None = None) -> None:
        object.__setattr__(self, "feature", key_of(feature))
        if isinstance(fields, str):
            fields = [fields]
        object.__setattr__(
            self, "fields", None if fields is None else tuple(validate_field_key(f) for f in fields)
        )


@dataclass(frozen=True, init=False)
class FieldSpec:
    """A logical part of a sample's data with the code version its author bumps.

    Args:
        key: the field name (`audio`).
        code_version: bump it when the algorithm producing this field changes.
        deps: explicit parent fields; `None` uses the default mapping (the same-named
            field of each upstream if it has one, otherwise all of that upstream's fields).
        description: shown in Dagster; never changes versions.

    Example:
        >>> FieldSpec("faces", code_version="2", deps=[FieldDep("crop", ["frames"])]).code_version
        '2'
    """

    key: str
    code_version: str
    deps: tuple[FieldDep, ...] | None
    description: str | None

    def __init__(
        self,
        key: str,
        *,
        code_version: str | int = "1",
        deps: Iterable[FieldDep] | Mapping[Any, Sequence[str] | None] | None = None,
        description: str | None = None,
    ) -> None:
        object.__setattr__(self, "key", validate_field_key(key))
        if not isinstance(code_version, str | int) or str(code_version) == "":
            raise SpecError(f"Field {key!r}: code_version must be a non-empty string.")
        object.__setattr__(self, "code_version", str(code_version))
        if isinstance(deps, Mapping):
            by_feature = cast(Mapping[Any, Sequence[str] | None], deps)
            deps = [FieldDep(k, v) for k, v in by_feature.items()]
        object.__setattr__(self, "deps", None if deps is None else tuple(deps))
        object.__setattr__(self, "description", description)


@dataclass(frozen=True, init=False)
class FeatureDep:
    """An edge from an upstream feature with its per-edge options.

    Args:
        feature: the upstream (key, spec or feature class).
        rename: upstream column -> column name seen by this feature.
        select: upstream user columns to carry (default: all of them).
        filters: conditions in the filter language on the upstream's columns (after
            rename; all its columns, not only the selected ones), e.g. `"duration > 5"`.
        lineage: how upstream rows map to rows of this feature (default identity).
        optional: left join: samples missing upstream still appear.

    Example:
        >>> FeatureDep("video", rename={"path": "video_path"}).rename
        (('path', 'video_path'),)
    """

    feature: FeatureKey
    rename: tuple[tuple[str, str], ...]
    select: tuple[str, ...] | None
    filters: tuple[str, ...]
    lineage: Lineage
    optional: bool

    def __init__(
        self,
        feature: Any,
        *,
        rename: Mapping[str, str] | None = None,
        select: Sequence[str] | None = None,
        filters: Sequence[str] | str = (),
        lineage: Lineage | None = None,
        optional: bool = False,
    ) -> None:
        object.__setattr__(self, "feature", key_of(feature))
        where = f"Dep on {self.feature}"
        if rename is not None and not isinstance(rename, Mapping):
            raise SpecError(f"{where}: rename must map upstream columns to new names.")
        pairs = [
            (
                validate_column_name(old, what=f"{where}, rename"),
                validate_column_name(new, what=f"{where}, rename"),
            )
            for old, new in (rename or {}).items()
        ]
        targets = [new for _, new in pairs]
        if len(set(targets)) != len(targets):
            raise SpecError(
                f"{where}: rename maps several columns onto one name: {sorted(targets)}."
            )
        object.__setattr__(self, "rename", tuple(sorted(pairs)))
        if isinstance(select, str):
            select = [select]
        object.__setattr__(
            self,
            "select",
            None
            if select is None
            else tuple(validate_column_name(c, what=f"{where}, select") for c in select),
        )
        filters = (filters,) if isinstance(filters, str) else tuple(filters)
        for predicate in filters:
            try:
                parse_filter(predicate)  # refused here, where it was written (and cached)
            except SpecError as exc:
                raise SpecError(f"Dep on {self.feature}: {exc}") from None
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "lineage", lineage or Lineage.identity())
        object.__setattr__(self, "optional", bool(optional))

    @property
    def rename_map(self) -> dict[str, str]:
        """The rename option as a dict."""
        return dict(self.rename)


@dataclass(frozen=True, init=False)
class FeatureSpec:
    """The definition of a feature: key, id columns, fields and deps.

    Args:
        key: `"a/b"` string or parts.
        id_columns: columns that identify a sample.
        fields: field specs or plain field names (code version "1").
        deps: upstream features (keys, specs, feature classes or `FeatureDep`).
        description: shown in Dagster; never changes versions.
        tags: shown in Dagster; never change versions.
        metadata: shown in Dagster; never changes versions.

    Raises:
        SpecError: on empty id columns, duplicate fields or deps.

    Example:
        >>> FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames"]).field_keys
        ('audio', 'frames')
    """

    key: FeatureKey
    id_columns: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    deps: tuple[FeatureDep, ...]
    description: str | None
    tags: tuple[tuple[str, str], ...]
    metadata: tuple[tuple[str, Any], ...] = field(compare=False)

    def __init__(
        self,
        key: KeyLike,
        *,
        id_columns: Sequence[str],
        fields: Sequence[FieldSpec | str] = ("default",),
        deps: Sequence[Any] = (),
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        fkey = FeatureKey.of(key)
        object.__setattr__(self, "key", fkey)
        if isinstance(id_columns, str):
            id_columns = [id_columns]
        if (
            not isinstance(id_columns, Sequence)
            or not id_columns
            or len(set(id_columns)) != len(id_columns)
        ):
            raise SpecError(f"Feature {fkey}: id_columns must be a non-empty list without repeats.")
        ids = tuple(validate_column_name(c, what=f"Feature {fkey}, id_columns") for c in id_columns)
        if len({c.lower() for c in ids}) != len(ids):
            raise SpecError(
                f"Feature {fkey}: id_columns {list(ids)} differ only in case; some stores "
                "ignore case in column names."
            )
        object.__setattr__(self, "id_columns", ids)
        if isinstance(fields, str | FieldSpec):  # one field, not the characters of its name
            fields = [fields]
        specs = tuple(f if isinstance(f, FieldSpec) else FieldSpec(f) for f in fields)
        names = [f.key for f in specs]
        if not specs or len(set(names)) != len(names):
            raise SpecError(f"Feature {fkey}: fields must be non-empty and unique, got {names}.")
        object.__setattr__(self, "fields", specs)
        if isinstance(deps, str | FeatureDep | FeatureKey) or not isinstance(deps, Sequence):
            deps = [deps]  # one upstream, not the characters of its key
        edges = tuple(d if isinstance(d, FeatureDep) else FeatureDep(d) for d in deps)
        upstreams = [d.feature for d in edges]
        if len(set(upstreams)) != len(upstreams):
            raise SpecError(
                f"Feature {fkey}: each upstream may appear once in deps, got {upstreams}."
            )
        if fkey in upstreams:
            raise SpecError(f"Feature {fkey} depends on itself.")
        object.__setattr__(self, "deps", edges)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", tuple(sorted((tags or {}).items())))
        object.__setattr__(self, "metadata", tuple(sorted((metadata or {}).items())))

    @property
    def field_keys(self) -> tuple[str, ...]:
        """The field names in declaration order."""
        return tuple(f.key for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The field spec named `name`."""
        for f in self.fields:
            if f.key == name:
                return f
        raise SpecError(
            f"Feature {self.key} has no field {name!r}; fields: {list(self.field_keys)}."
        )

    def dep(self, upstream: Any) -> FeatureDep:
        """The dep edge on `upstream`."""
        key = key_of(upstream)
        for d in self.deps:
            if d.feature == key:
                return d
        raise SpecError(f"Feature {self.key} has no dep on {key}.")

    @property
    def is_root(self) -> bool:
        """True if the feature has no upstream features."""
        return not self.deps

    @property
    def parent_key(self) -> tuple[str, ...]:
        """Columns that key the increment: the expansion `on` columns, else the id columns."""
        for d in self.deps:
            if d.lineage.kind == "expansion":
                return d.lineage.on
        return self.id_columns

    def replace(self, **changes: Any) -> "FeatureSpec":
        """A copy with some constructor arguments changed (validated like a new spec).

        Args:
            **changes: any of `key`, `id_columns`, `fields`, `deps`, `description`, `tags`,
                `metadata`.

        Raises:
            SpecError: an unknown argument, or the changed spec is invalid.

        Example:
            >>> spec = FeatureSpec("video", id_columns=["sample_id"], fields=["audio"])
            >>> spec.replace(description="raw videos").description
            'raw videos'
        """
        current: dict[str, Any] = {
            "key": self.key,
            "id_columns": self.id_columns,
            "fields": self.fields,
            "deps": self.deps,
            "description": self.description,
            "tags": dict(self.tags),
            "metadata": dict(self.metadata),
        }
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise SpecError(
                f"Feature {self.key}: cannot replace {unknown}; use any of {sorted(current)}."
            )
        current.update(changes)
        key = current.pop("key")
        return FeatureSpec(key, **current)

    def with_field(self, field: "FieldSpec | str") -> "FeatureSpec":
        """A copy with `field` added, or replacing the field of the same key.

        Example:
            >>> spec = FeatureSpec("video", id_columns=["sample_id"], fields=["audio"])
            >>> spec.with_field("frames").field_keys
            ('audio', 'frames')
        """
        new = field if isinstance(field, FieldSpec) else FieldSpec(field)
        if new.key in self.field_keys:
            return self.replace(fields=[new if f.key == new.key else f for f in self.fields])
        return self.replace(fields=[*self.fields, new])

    def without_field(self, field_key: str) -> "FeatureSpec":
        """A copy without one field (a feature keeps at least one).

        Example:
            >>> spec = FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames"])
            >>> spec.without_field("audio").field_keys
            ('frames',)
        """
        self.field(field_key)
        return self.replace(fields=[f for f in self.fields if f.key != field_key])

    def with_field_deps(
        self, field_key: str, deps: Iterable[FieldDep] | Mapping[Any, Sequence[str] | None] | None
    ) -> "FeatureSpec":
        """A copy where one field reads other parent fields (`None`: the default mapping).

        Example:
            >>> spec = FeatureSpec("crop", id_columns=["id"], fields=["faces"], deps=["video"])
            >>> spec.with_field_deps("faces", {"video": ["frames"]}).field("faces").deps
            (FieldDep(feature=FeatureKey('video'), fields=('frames',)),)
        """
        old = self.field(field_key)
        new = FieldSpec(
            old.key, code_version=old.code_version, deps=deps, description=old.description
        )
        return self.with_field(new)

    def with_dep(self, dep: Any) -> "FeatureSpec":
        """A copy with an upstream added, or replacing the edge on the same upstream.

        Example:
            >>> spec = FeatureSpec("crop", id_columns=["id"], deps=["video"])
            >>> spec.with_dep(FeatureDep("audio", optional=True)).deps[1].optional
            True
        """
        edge = dep if isinstance(dep, FeatureDep) else FeatureDep(dep)
        if edge.feature in {d.feature for d in self.deps}:
            return self.replace(deps=[edge if d.feature == edge.feature else d for d in self.deps])
        return self.replace(deps=[*self.deps, edge])

    def without_dep(self, upstream: Any) -> "FeatureSpec":
        """A copy without the edge on `upstream`; field deps naming it are dropped too.

        Example:
            >>> spec = FeatureSpec("crop", id_columns=["id"], deps=["video", "audio"])
            >>> [d.feature.path for d in spec.without_dep("audio").deps] == ["video"]
            True
        """
        key = self.dep(upstream).feature
        fields = [
            f
            if f.deps is None
            else FieldSpec(
                f.key,
                code_version=f.code_version,
                deps=[d for d in f.deps if d.feature != key] or None,
                description=f.description,
            )
            for f in self.fields
        ]
        return self.replace(deps=[d for d in self.deps if d.feature != key], fields=fields)

    def with_field_code_version(self, field_key: str, code_version: str | int) -> "FeatureSpec":
        """A copy with one field's code version changed.

        Example:
            >>> spec = FeatureSpec("video", id_columns=["sample_id"], fields=["audio"])
            >>> spec.with_field_code_version("audio", 2).field("audio").code_version
            '2'
        """
        old = self.field(field_key)
        return self.with_field(
            FieldSpec(
                old.key, code_version=code_version, deps=old.deps, description=old.description
            )
        )


for _spec_class in (Lineage, FieldDep, FieldSpec, FeatureDep, FeatureSpec):
    guard_public_methods(_spec_class)  # wrong argument shapes raise SpecError, not TypeError
