"""Feature definitions to and from JSON-able dicts (graph snapshots pushed to stores)."""

import re
from collections.abc import Mapping
from typing import Any

import polars as pl

from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import SpecError
from metaxy_core._spec import FeatureDep, FeatureSpec, FieldDep, FieldSpec, Lineage

# Column types a feature class can declare (see polars_dtype), by their repr.
_SCALAR_DTYPES: dict[str, pl.DataType] = {
    repr(t): t
    for t in (pl.String(), pl.Int64(), pl.Float64(), pl.Boolean(), pl.Binary(), pl.Date())
}
_LIST = re.compile(r"List\((.+)\)")
_DATETIME = re.compile(r"Datetime\(time_unit='(ms|us|ns)', time_zone=(?:None|'([^']+)')\)")


def _parse_dtype(text: str) -> pl.DataType:
    """Read back a column type written by `repr` into a snapshot (no eval: snapshots are data)."""
    if text in _SCALAR_DTYPES:
        return _SCALAR_DTYPES[text]
    if match := _LIST.fullmatch(text):
        return pl.List(_parse_dtype(match.group(1)))
    if match := _DATETIME.fullmatch(text):
        return pl.Datetime(match.group(1), match.group(2))  # type: ignore[arg-type]
    raise SpecError(f"Cannot read column type {text!r} from a snapshot.")


def definition_to_dict(d: FeatureDefinition) -> dict[str, Any]:
    s = d.spec
    return {
        "key": s.key.path,
        "id_columns": list(s.id_columns),
        "fields": [
            {
                "key": f.key,
                "code_version": f.code_version,
                "deps": None
                if f.deps is None
                else [
                    {
                        "feature": fd.feature.path,
                        "fields": None if fd.fields is None else list(fd.fields),
                    }
                    for fd in f.deps
                ],
                "description": f.description,
            }
            for f in s.fields
        ],
        "deps": [
            {
                "feature": dep.feature.path,
                "rename": dict(dep.rename),
                "select": None if dep.select is None else list(dep.select),
                "filters": list(dep.filters),
                "lineage": {"kind": dep.lineage.kind, "on": list(dep.lineage.on)},
                "optional": dep.optional,
            }
            for dep in s.deps
        ],
        "description": s.description,
        "tags": dict(s.tags),
        "columns": {c: repr(t) for c, t in d.columns.items()},
    }


def definition_from_dict(data: Mapping[str, Any]) -> FeatureDefinition:
    spec = FeatureSpec(
        data["key"],
        id_columns=data["id_columns"],
        fields=[
            FieldSpec(
                f["key"],
                code_version=f["code_version"],
                deps=None
                if f["deps"] is None
                else [FieldDep(d["feature"], d["fields"]) for d in f["deps"]],
                description=f.get("description"),
            )
            for f in data["fields"]
        ],
        deps=[
            FeatureDep(
                d["feature"],
                rename=d["rename"],
                select=d["select"],
                filters=d["filters"],
                lineage=Lineage(d["lineage"]["kind"], tuple(d["lineage"]["on"])),
                optional=d["optional"],
            )
            for d in data["deps"]
        ],
        description=data.get("description"),
        tags=data.get("tags"),
    )
    return FeatureDefinition(spec, {c: _parse_dtype(t) for c, t in data["columns"].items()})
