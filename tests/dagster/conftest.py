import tempfile
from pathlib import Path

import dagster as dg
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import Source


@pytest.fixture
def instance(tmp_path):
    # A persistent temporary instance (sensor contexts refuse ephemeral ones); in memory-backed
    # /dev/shm when there is one, since the event log syncs to disk on every event.
    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path) as home,
        dg.instance_for_test(temp_dir=home) as temp_instance,
    ):
        yield temp_instance


@pytest.fixture
def graph() -> mx.FeatureGraph:
    return video.graph()


@pytest.fixture
def source() -> Source:
    return Source(video.inputs(25))


@pytest.fixture
def store(graph) -> mx.MemoryStore:
    return mx.MemoryStore(graph)


@pytest.fixture
def resources(graph, store) -> dict:
    resource = mxd.MetaxyStore(graph=graph, store=store)
    return {"metaxy_store": resource, "metaxy_io_manager": mxd.MetaxyIOManager(store=resource)}
