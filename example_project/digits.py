"""The data: scikit-learn's bundled handwritten digits, and the numpy code run on them.

Everything here is deterministic: the images ship inside scikit-learn (no download), and the
transformations are fixed formulas (no training, no random numbers).
"""

import hashlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import load_digits

from example_project.features import IMAGE_ID

DATA_DIR_ENV = "METAXY_DATA_DIR"
EDITS_FILE = "inverted_images.txt"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHIFTS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
EMBEDDING_SIZE = 16


def data_dir() -> Path:
    """Where the example keeps its DuckDB file and edits: `$METAXY_DATA_DIR` or `./.metaxy_data`."""
    return Path(os.environ.get(DATA_DIR_ENV) or ".metaxy_data").resolve()


@cache
def _bundled() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    return digits.images.reshape(len(digits.images), 64), digits.target


def image_id(index: int) -> str:
    """The id of the `index`-th bundled digit (`img-0007`)."""
    return f"img-{index:04d}"


def inverted_ids(directory: Path | None = None) -> list[str]:
    """Image ids listed in `<data dir>/inverted_images.txt` (one per line; missing file: none)."""
    path = (directory or data_dir()) / EDITS_FILE
    if not path.exists():
        return []
    return sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})


def load_images(*, inverted: Iterable[str] = ()) -> pl.DataFrame:
    """Every bundled digit: `image_id`, `pixel_values` (64 grey levels) and `digit`.

    Images named in `inverted` are served with inverted grey levels (16 - x), standing in for
    images whose source file changed.

    Example:
        >>> load_images().height
        1797
    """
    pixels, labels = _bundled()
    ids = [image_id(i) for i in range(len(labels))]
    flip = np.isin(np.array(ids), np.array(sorted(set(inverted)), dtype=str))
    pixels = np.where(flip[:, None], 16.0 - pixels, pixels)
    return pl.DataFrame(
        {IMAGE_ID: ids, "pixel_values": pixels.tolist(), "digit": labels.astype(np.int64)},
        schema={IMAGE_ID: pl.String, "pixel_values": pl.List(pl.Float64), "digit": pl.Int64},
    )


def _content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def input_versions(images: pl.DataFrame) -> pl.DataFrame:
    """Per image, one input version per field of `image`: content hashes of pixels and label."""
    pixels = np.array(images["pixel_values"].to_list(), dtype=np.float64)
    return pl.DataFrame(
        {
            IMAGE_ID: images[IMAGE_ID],
            "pixels": [_content_hash(row.tobytes()) for row in pixels],
            "label": [_content_hash(str(d).encode()) for d in images["digit"]],
        }
    )


def _matrix(rows: pl.DataFrame, column: str, width: int) -> np.ndarray:
    if rows.is_empty():
        return np.zeros((0, width))
    return np.array(rows[column].to_list(), dtype=np.float64).reshape(rows.height, width)


def normalize(rows: pl.DataFrame) -> pl.DataFrame:
    """Centre each image on zero and scale it to unit length (a blank image stays zero)."""
    x = _matrix(rows, "pixel_values", 64) / 16.0
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return rows.select(IMAGE_ID).with_columns(
        pl.Series("normalized_pixels", x.tolist(), dtype=pl.List(pl.Float64))
    )


@cache
def _dct_projection() -> np.ndarray:
    """A fixed 64x16 matrix: the 4x4 lowest-frequency orthonormal 2D DCT-II basis images."""
    n = np.arange(8)
    basis = np.array([np.cos(np.pi * (2 * n + 1) * k / 16) for k in range(4)])
    basis[0] *= np.sqrt(1 / 8)
    basis[1:] *= np.sqrt(2 / 8)
    return np.einsum("ai,bj->ijab", basis, basis).reshape(64, EMBEDDING_SIZE)


def embed(rows: pl.DataFrame) -> pl.DataFrame:
    """Project normalized images onto the fixed DCT basis; keep the digit for class summaries."""
    vectors = _matrix(rows, "normalized_pixels", 64) @ _dct_projection()
    return rows.select(IMAGE_ID, "digit").with_columns(
        pl.Series("vector", vectors.round(12).tolist(), dtype=pl.List(pl.Float64))
    )


def augment(rows: pl.DataFrame) -> pl.DataFrame:
    """Four copies of every image, shifted one pixel up, down, left and right (zero fill)."""
    images = _matrix(rows, "pixel_values", 64).reshape(-1, 8, 8)
    parts = []
    for name, (dy, dx) in SHIFTS.items():
        shifted = np.zeros_like(images)
        src_y, dst_y = (slice(max(-dy, 0), 8 - max(dy, 0)), slice(max(dy, 0), 8 - max(-dy, 0)))
        src_x, dst_x = (slice(max(-dx, 0), 8 - max(dx, 0)), slice(max(dx, 0), 8 - max(-dx, 0)))
        shifted[:, dst_y, dst_x] = images[:, src_y, src_x]
        parts.append(
            rows.select(IMAGE_ID).with_columns(
                pl.lit(name).alias("variant"),
                pl.Series(
                    "augmented_pixels", shifted.reshape(-1, 64).tolist(), dtype=pl.List(pl.Float64)
                ),
            )
        )
    return pl.concat(parts).sort(IMAGE_ID, "variant")


def caption(rows: pl.DataFrame) -> pl.DataFrame:
    """An English sentence per image, made from its label alone."""
    return rows.select(IMAGE_ID).with_columns(
        pl.Series("caption", [f"a handwritten {WORDS[d]}" for d in rows["digit"]], dtype=pl.String)
    )


def summarize(embeddings: pl.DataFrame) -> pl.DataFrame:
    """Per digit: the mean embedding vector and how many images it has."""
    out = []
    for digit, group in sorted(embeddings.partition_by("digit", as_dict=True).items()):
        vectors = _matrix(group, "vector", EMBEDDING_SIZE)
        out.append(
            {
                "digit": digit[0],
                "centroid": vectors.mean(axis=0).round(12).tolist(),
                "count": group.height,
            }
        )
    schema = {"digit": pl.Int64, "centroid": pl.List(pl.Float64), "count": pl.Int64}
    return pl.DataFrame(out, schema=schema)
