"""Row hash settings: one named algorithm and length, the same bytes on every store."""

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

from metaxy_core._errors import HashSettingsMismatchError, SpecError
from metaxy_core._guard import guard_public_methods


class HashAlgorithm(StrEnum):
    """Row hash algorithms every store computes identically.

    `xxh3_64` (default) is fastest and written as a decimal string; `md5` and `sha256`
    are lowercase hex.
    """

    XXH3_64 = "xxh3_64"
    MD5 = "md5"
    SHA256 = "sha256"


_FULL_LENGTH = {HashAlgorithm.XXH3_64: 20, HashAlgorithm.MD5: 32, HashAlgorithm.SHA256: 64}


@dataclass(frozen=True, init=False)
class HashSettings:
    """The row hash algorithm and how many leading characters of it to keep.

    Args:
        algorithm: a `HashAlgorithm` or its name.
        length: keep this many leading characters (default: the whole hash).

    Example:
        >>> HashSettings("md5", length=16).describe()
        'md5/16'
    """

    algorithm: HashAlgorithm
    length: int | None

    # A hand-written __init__ so that the algorithm's name is accepted with its type.
    def __init__(
        self, algorithm: HashAlgorithm | str = HashAlgorithm.XXH3_64, length: int | None = None
    ) -> None:
        try:
            object.__setattr__(self, "algorithm", HashAlgorithm(algorithm))
        except ValueError:
            names = ", ".join(a.value for a in HashAlgorithm)
            raise SpecError(f"Unknown hash algorithm {algorithm!r}; use one of: {names}.") from None
        object.__setattr__(self, "length", length)
        if length is not None and (not isinstance(length, int) or isinstance(length, bool)):
            raise SpecError(f"Hash length must be an integer or None, got {length!r}.")
        if self.length is not None and not 8 <= self.length <= _FULL_LENGTH[self.algorithm]:
            raise SpecError(
                f"Hash length {self.length} is out of range for {self.algorithm.value}: "
                f"use 8..{_FULL_LENGTH[self.algorithm]} or None."
            )

    def describe(self) -> str:
        """`algorithm/length` as recorded in a store."""
        return f"{self.algorithm.value}/{self.length or 'full'}"

    @classmethod
    def parse(cls, text: str) -> "HashSettings":
        """Inverse of `describe` (e.g. settings recorded in a store)."""
        if not isinstance(text, str):
            raise SpecError(f"Cannot read hash settings {text!r}: expected 'algorithm/length'.")
        algorithm, _, length = text.partition("/")
        if length not in ("", "full") and not length.isdigit():
            raise SpecError(f"Cannot read hash settings {text!r}: expected 'algorithm/length'.")
        return cls(algorithm, None if length in ("", "full") else int(length))


# The layout of every row hash input (see `_provenance`), recorded beside the hash settings.
# Bump it when the layout changes: a store written in another layout would read as stale
# everywhere, so it is refused instead. Stores recorded before formats were: format 1;
# format 2 length-prefixed every part, format 3 only arbitrary text (`_provenance`).
PROVENANCE_FORMAT = 3


def settings_record(settings: HashSettings) -> str:
    """What a store records: the hash settings and the provenance format, `md5/16/p3`."""
    return f"{settings.describe()}/p{PROVENANCE_FORMAT}"


def settings_from_record(text: str) -> HashSettings:
    """Inverse of `settings_record`.

    Raises:
        HashSettingsMismatchError: the store was written in another provenance format.
        SpecError: the record cannot be read.
    """
    described, marker, fmt = text.rpartition("/p")
    if not marker:
        described, fmt = text, "1"
    if not fmt.isdigit():
        raise SpecError(f"Cannot read hash settings {text!r}: expected 'algorithm/length/pN'.")
    if int(fmt) != PROVENANCE_FORMAT:
        raise HashSettingsMismatchError(
            f"This store recorded hash settings {text!r}: its provenance was composed in "
            f"format {fmt}, but this version of metaxy_core composes format "
            f"{PROVENANCE_FORMAT}, so every stored sample would read as stale. Recompute "
            "the features into a new store."
        )
    return HashSettings.parse(described)


def definition_hash(*parts: str) -> str:
    """Hash of definition-level parts (versions of fields, features, projects).

    The parts are hashed as a JSON list: a code version may hold any text, and a list
    keeps its items apart whatever they contain.
    """
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


guard_public_methods(HashSettings)  # wrong argument shapes raise SpecError
