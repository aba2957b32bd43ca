"""Read commands: graph, status, plan, why."""

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from metaxy_core import _explain as explain
from metaxy_core._keys import FeatureKey
from metaxy_core.cli import _render
from metaxy_core.cli._commands._options import Json, Store, session
from metaxy_core.stores import MetadataStore

Features = Annotated[
    list[str] | None, typer.Argument(help="Feature keys (default: every feature).")
]
Check = Annotated[
    bool, typer.Option("--check", help="Exit with 1 if anything is pending (for CI).")
]


class GraphFormat(StrEnum):
    """How `metaxy graph` draws the graph."""

    TREE = "tree"
    MERMAID = "mermaid"
    DOT = "dot"


def graph(
    ctx: typer.Context,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = (
        GraphFormat.TREE
    ),
    fields: Annotated[
        bool, typer.Option("--fields", help="Field-level view: each field and what it reads.")
    ] = False,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats", help="Add live samples, pending counts and last write per feature."
        ),
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """The feature graph as a tree, Mermaid or Graphviz DOT."""
    s = session(ctx)
    g = s.graph()
    numbers: dict[FeatureKey, dict[str, Any]] = {}
    if stats:
        opened = s.store(store)
        for key in s.progress(g.keys, "status"):
            st = explain.status(opened, [key])[0]
            numbers[key] = {
                "live": st.live,
                "pending": st.pending,
                "last_write": _when(st.last_write),
            }
    if as_json:
        s.json(_render.graph_dict(g, numbers))
    elif fmt is GraphFormat.MERMAID:
        s.out.print(_render.mermaid(g, fields=fields))
    elif fmt is GraphFormat.DOT:
        s.out.print(_render.dot(g, fields=fields))
    else:
        s.out.print(_render.tree(g, fields=fields, stats=numbers))


def status(
    ctx: typer.Context,
    features: Features = None,
    check: Check = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Per feature: live samples, new / stale / orphaned, stale fields and their cause."""
    s = session(ctx)
    opened = s.store(store)
    keys = [s.feature(f) for f in features] if features else list(s.graph().keys)
    rows = [explain.status(opened, [k])[0] for k in s.progress(keys, "status")]
    if as_json:
        s.json({"store": _describe(opened), "features": [r.to_dict() for r in rows]})
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for title in ("feature", "live", "new", "stale", "orphaned", "stale fields (cause)"):
            table.add_column(title, justify="right" if title in _COUNTS else "left")
        table.add_column("last write")
        for r in rows:
            table.add_row(
                r.feature.path,
                str(r.live),
                _n(r.new, r.state),
                str(r.stale),
                _n(r.orphaned, r.state),
                _fields(r.stale_fields) or "-",
                _when(r.last_write) or "never",
            )
        s.out.print(table)
        notes = {r.state for r in rows if r.state != "ok"}
        for note in sorted(notes):
            s.out.print(f"{_NOTES[note]}")
    if check and any(r.pending for r in rows):
        raise typer.Exit(1)


def plan(
    ctx: typer.Context,
    features: Features = None,
    check: Check = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """A dry run: what a run would recompute now, with the downstream impact it would have."""
    s = session(ctx)
    opened = s.store(store)
    keys = [s.feature(f) for f in features] if features else None
    with s.busy("planning"):
        result = explain.plan(opened, keys)
    if as_json:
        s.json({"store": _describe(opened), **result.to_dict()})
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for title in (
            "feature",
            "new",
            "stale",
            "+ downstream",
            "to compute",
            "fields",
            "orphaned",
        ):
            table.add_column(
                title, justify="right" if title not in ("feature", "fields") else "left"
            )
        for st in result.steps:
            table.add_row(
                st.feature.path,
                str(st.new),
                str(st.stale),
                str(st.projected_new + st.projected_stale),
                str(st.to_compute),
                ", ".join(f"{f} {n}" for f, n in st.fields.items()) or "-",
                str(st.orphaned),
            )
        s.out.print(table)
        total = sum(st.to_compute for st in result.steps)
        later = sum(st.projected_new + st.projected_stale for st in result.steps)
        s.out.print(
            "Nothing to do."
            if result.is_empty
            else f"{total} sample(s) to compute, {later} of them once their upstream is recomputed."
        )
    if check and not result.is_empty:
        raise typer.Exit(1)


def why(
    ctx: typer.Context,
    feature: Annotated[str, typer.Argument(help="The feature key.")],
    ids: Annotated[
        list[str],
        typer.Argument(
            help="Sample ids: the value, or col=value,col2=value for several id columns."
        ),
    ],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """For each sample: which fields are stale and the chain of causes upstream."""
    s = session(ctx)
    key = s.feature(feature)
    opened = s.store(store)
    samples = [_parse_id(text) for text in ids]
    if all(isinstance(x, str) for x in samples):
        wanted: Any = samples
    elif all(isinstance(x, dict) for x in samples):
        wanted = samples
    else:
        raise typer.BadParameter(
            "use either plain ids or col=value pairs, not both", param_hint="IDS"
        )
    with s.busy("explaining"):
        found = explain.why(opened, key, wanted)
    if as_json:
        s.json([e.to_dict() for e in found])
    else:
        s.out.print("\n\n".join(e.describe() for e in found))


# -- helpers -----------------------------------------------------------------------------------

_COUNTS = {"live", "new", "stale", "orphaned"}
_NOTES = {
    "inputs not checked": (
        "Roots are checked for code changes only (their inputs are known to the pipeline)."
    ),
    "upstream missing": "Some upstream features were never written: nothing to do yet.",
}


def _parse_id(text: str) -> str | dict[str, str]:
    if "=" not in text:
        return text
    pairs = [p.split("=", 1) for p in text.split(",")]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise typer.BadParameter(
            f"malformed id {text!r}: use col=value[,col2=value]", param_hint="IDS"
        )
    return {k.strip(): v for k, v in pairs}


def _n(value: int, state: str) -> str:
    return "-" if state == "inputs not checked" else str(value)


def _fields(stale: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{f}: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        for f, reasons in stale.items()
    )


def _when(at: Any) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def _describe(store: MetadataStore) -> str:
    location = getattr(store, "uri", None) or getattr(store, "path", None)
    return f"{type(store).__name__}({location})" if location else type(store).__name__
