"""Where a DeltaStore's tables live, in one form that deltalake and polars both read right.

deltalake 1.x takes a local path or a URI, but `DeltaTable.file_uris()` hands the data
files back percent-encoded (a table under `/data/my store` lists
`/data/my%20store/part-0.parquet`, and `s3://b/my%20store/...` for `s3://b/my store`),
while polars' `scan_delta` reads those names literally. Every read after the first write
of a store whose path held a space, `#`, `%` or a non-ASCII character failed with
`FileNotFoundError`. So a store's location is made canonical once, at open (an absolute
local path, or an object-store URI percent-encoded once), and `DeltaTableAt` decodes the
file names on their way to polars.

A few characters deltalake cannot handle in a local path at all are refused at open: a
percent escape such as `%20` (decoded a second time when the log is read, so another
directory would be read), brackets, `|`, `^` and backslashes (a panic or a split path),
and control characters.
"""

import re
from pathlib import Path
from urllib.parse import quote, unquote

from deltalake import DeltaTable
from deltalake.table import FilePruningPredicateType, FilterType

from metaxy_core._errors import StoreError

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_REFUSED = frozenset("[]|^\\")
# What a URI path may hold unescaped (RFC 3986 pchar and "/"); "%" is handled apart.
_URI_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def canonical_location(location: str | Path) -> str:
    """An absolute local path, or an object-store URI whose path is percent-encoded once.

    Args:
        location: a local path (relative paths are made absolute, `~` is expanded), a
            `file:` URI (its percent escapes are decoded) or an object-store URI such as
            ``s3://bucket/my store`` (characters a URI cannot hold are escaped; existing
            escapes such as ``%20`` are kept).

    Returns:
        The location every deltalake call of the store uses, without a trailing slash.

    Raises:
        StoreError: a local path deltalake cannot use (see the module docstring).
    """
    text = str(location)
    if isinstance(location, Path) or ("://" not in text and not text.startswith("file:")):
        return _checked_local(Path(text).expanduser().resolve())
    if text.startswith("file:"):
        return _checked_local(Path(_file_uri_path(text)).resolve())
    scheme, _, rest = text.partition("://")
    bucket, slash, path = rest.partition("/")
    return f"{scheme}://{bucket}{_encode_once(slash + path)}".rstrip("/")


def is_local(location: str) -> bool:
    """True for a canonical local path (as returned by `canonical_location`)."""
    return "://" not in location


def _file_uri_path(uri: str) -> str:
    """The local path a `file:` URI names (`file:/p`, `file:///p`, `file://localhost/p`)."""
    rest = uri.removeprefix("file:")
    if rest.startswith("//"):
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise StoreError(
                f"DeltaStore cannot open {uri!r}: a file URI must name this machine "
                "(file:///path or file://localhost/path)."
            )
        rest = "/" + path
    return unquote(rest)


def _checked_local(path: Path) -> str:
    text = str(path)
    refused = sorted({c for c in text if c in _REFUSED or ord(c) < 32 or ord(c) == 127})
    escape = _PERCENT_ESCAPE.search(text)
    if refused or escape:
        found = [repr(c) for c in refused] + ([repr(escape.group())] if escape else [])
        raise StoreError(
            f"DeltaStore cannot use the local directory {text!r}: deltalake mishandles "
            f"{', '.join(found)} in local paths (a percent escape such as '%20' is decoded "
            "twice, so another directory would be read; '[', ']', '|', '^', '\\' and control "
            "characters fail). Rename the directory or choose another location; spaces, "
            "'#', '%' on its own and non-ASCII characters are fine."
        )
    return text


def _encode_once(path: str) -> str:
    """Escape what a URI path cannot hold, keeping escapes that are already there."""
    pieces = _PERCENT_ESCAPE.split(path)
    escapes = _PERCENT_ESCAPE.findall(path)
    encoded = [quote(piece, safe=_URI_PATH_SAFE) for piece in pieces]
    return "".join(p + e for p, e in zip(encoded, [*escapes, ""], strict=True))


def _decoded(uri: str) -> str:
    """A data file's name as polars reads it: the path part of deltalake's answer decoded."""
    if "://" not in uri:  # a local path
        return unquote(uri)
    scheme, _, rest = uri.partition("://")
    bucket, slash, path = rest.partition("/")
    return f"{scheme}://{bucket}{slash}{unquote(path)}"


class DeltaTableAt(DeltaTable):
    """A `DeltaTable` whose `file_uris()` names the data files the way polars reads them."""

    def file_uris(
        self,
        partition_filters: FilterType | None = None,
        *,
        file_pruning_predicate: FilePruningPredicateType | None = None,
    ) -> list[str]:
        """Every data file of the table, decoded (deltalake returns them percent-encoded)."""
        uris = super().file_uris(partition_filters, file_pruning_predicate=file_pruning_predicate)
        return [_decoded(uri) for uri in uris]
