"""The video example as a Dagster pipeline: compute functions and a mutable root source."""

from typing import Any

import polars as pl

import metaxy_core as mx
from tests.core import video


class Source:
    """A root source whose samples a test can change between runs."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def __call__(self) -> pl.DataFrame:
        return self.frame


def _fill(values: dict[str, Any]):
    def compute(context, increment: mx.Increment) -> pl.DataFrame:
        return increment.to_compute().with_columns(pl.lit(v).alias(k) for k, v in values.items())

    return compute


COMPUTES = {key: _fill(values) for key, values in video.VALUES.items()}
