"""Root sources list their samples once per sensor tick and once per run."""

import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import execute, requests, tick


class CountingSource(Source):
    def __init__(self, frame) -> None:
        super().__init__(frame)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return super().__call__()


def test_a_root_source_is_called_once_per_tick_and_once_per_run(graph, store, instance):
    source = CountingSource(video.inputs(5))
    resource = mxd.MetaxyStore(graph=graph, store=store)
    defs = mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource)
    (request,) = requests(tick(defs, "metaxy_increment_sensor", instance))
    assert source.calls == 1
    assert execute(defs, request, instance).success
    assert source.calls == 2  # the run's increment and its checks share one listing
