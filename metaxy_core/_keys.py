"""Feature and field keys: validated, hashable, slash-joined paths."""

import re
from collections.abc import Sequence
from typing import Self

from metaxy_core._errors import InvalidKeyError

# Matched with `fullmatch`: `$` alone would accept a trailing newline ("video\n").
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-\.]*")
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")


class FeatureKey:
    """The key of a feature: one or more parts, written `"a/b"`.

    Args:
        key: a `"a/b"` string, a sequence of parts, or another `FeatureKey`.

    Raises:
        InvalidKeyError: if the key is empty or a part has characters other than
            letters, digits, `_`, `-` and `.`.

    Example:
        >>> FeatureKey("video/crop").parts
        ('video', 'crop')
    """

    __slots__ = ("parts",)
    parts: tuple[str, ...]

    def __init__(self, key: "str | Sequence[str] | FeatureKey") -> None:
        if isinstance(key, FeatureKey):
            parts = key.parts
        elif isinstance(key, str):
            parts = tuple(key.split("/"))
        elif isinstance(key, Sequence):
            parts = tuple(key)
        else:  # a number, None...: reported like any other malformed key
            parts = ()
        if not parts or any(not isinstance(p, str) or not _PART.fullmatch(p) for p in parts):
            raise InvalidKeyError(
                f"Invalid feature key {key!r}: use non-empty parts of letters, digits, "
                "'_', '-' or '.', joined by '/' (e.g. 'video/crop')."
            )
        object.__setattr__(self, "parts", parts)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FeatureKey is immutable")

    @classmethod
    def of(cls, key: "str | Sequence[str] | FeatureKey") -> Self:
        """Coerce `key` to a `FeatureKey`."""
        return key if isinstance(key, cls) else cls(key)

    @property
    def path(self) -> str:
        """The key as a `"a/b"` string."""
        return "/".join(self.parts)

    @property
    def table_name(self) -> str:
        """A name usable as a table or directory name (`a__b`)."""
        return "__".join(p.replace("-", "_").replace(".", "_") for p in self.parts)

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"FeatureKey({self.path!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.path == other
        return isinstance(other, FeatureKey) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.path)

    def __lt__(self, other: "FeatureKey") -> bool:
        return self.parts < other.parts


def validate_field_key(name: str) -> str:
    """Return `name` if it is a valid field key, else raise `InvalidKeyError`."""
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise InvalidKeyError(
            f"Invalid field key {name!r}: use lowercase letters, digits and '_', "
            "starting with a letter or '_' (e.g. 'audio')."
        )
    return name


def validate_column_name(name: object, *, what: str) -> str:
    """Return `name` if it can name a column on every store, else raise `InvalidKeyError`.

    Any printable text is allowed (stores quote every identifier); control characters,
    surrounding spaces and the `metaxy_` / `__mx` prefixes the stores own are not.
    """
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or any(not ch.isprintable() for ch in name)
    ):
        raise InvalidKeyError(
            f"{what}: invalid column name {name!r}; use non-empty printable text without "
            "leading or trailing spaces."
        )
    if name == "*" or (name.startswith("^") and name.endswith("$")):
        raise InvalidKeyError(
            f"{what}: column name {name!r} reads as a pattern to polars ('*' or '^...$'); "
            "rename it."
        )
    if name.lower().startswith(("metaxy_", "__mx")):
        raise InvalidKeyError(
            f"{what}: column name {name!r} uses a prefix metaxy reserves for its own "
            "columns ('metaxy_', '__mx'); rename it."
        )
    return name
