"""Hand-written feature assets beside generated ones; every feature is computed one way."""

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import COMPUTES
from tests.dagster.sensing import execute, requests, tick

SENSOR = "metaxy_increment_sensor"


def crop_asset(graph: mx.FeatureGraph, **kwargs) -> dg.AssetsDefinition:
    @mxd.feature_asset(graph, "crop", **kwargs)
    def crop(context: dg.AssetExecutionContext, increment: mx.Increment) -> pl.DataFrame:
        return increment.to_compute().with_columns(crop_path=pl.lit("hand.mp4"))

    return crop


def test_a_hand_written_asset_is_selected_by_the_sensor_and_run_in_its_batch(
    graph, store, source, instance
):
    others = {k: fn for k, fn in COMPUTES.items() if k != "crop"}
    resource = mxd.MetaxyStore(graph=graph, store=store)
    defs = mxd.build_definitions(
        graph, others, {"video": source}, store=resource, assets=[crop_asset(graph)]
    )
    (request,) = requests(tick(defs, SENSOR, instance))
    assert "crop" in [k.to_user_string() for k in request.asset_selection]
    assert execute(defs, request, instance).success
    assert store.read("crop")["crop_path"].unique().to_list() == ["hand.mp4"]
    assert store.read("face_detection").height == 25  # its downstream ran in the same batch
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_a_feature_without_compute_or_asset_is_named(graph, store, source):
    resource = mxd.MetaxyStore(graph=graph, store=store)
    others = {k: fn for k, fn in COMPUTES.items() if k not in ("crop", "transcript")}
    with pytest.raises(mx.SpecError, match=r"\['crop', 'transcript'\] have no compute"):
        mxd.build_definitions(graph, others, {"video": source}, store=resource)
    defs = mxd.build_definitions(
        graph, others, {"video": source}, store=resource, exclude=["crop", "transcript"]
    )
    job = defs.resolve_job_def("metaxy_job")
    assert "crop" not in {k.to_user_string() for k in job.asset_layer.executable_asset_keys}


def test_a_feature_given_twice_or_an_unrelated_asset_is_refused(graph, store, source):
    resource = mxd.MetaxyStore(graph=graph, store=store)
    with pytest.raises(mx.SpecError, match=r"\['crop'\] are given more than one"):
        mxd.build_definitions(
            graph, COMPUTES, {"video": source}, store=resource, assets=[crop_asset(graph)]
        )

    @dg.asset
    def unrelated() -> None: ...

    with pytest.raises(mx.SpecError, match="not a feature asset of this graph"):
        mxd.build_definitions(
            graph, COMPUTES, {"video": source}, store=resource, assets=[unrelated]
        )


def test_a_hand_written_asset_partitioned_unlike_the_mode_is_refused(graph, store, source):
    resource = mxd.MetaxyStore(graph=graph, store=store)
    others = {k: fn for k, fn in COMPUTES.items() if k != "crop"}
    with pytest.raises(mx.SpecError, match="partitions_def=None"):
        mxd.build_definitions(
            graph,
            others,
            {"video": source},
            store=resource,
            mode="none",
            assets=[crop_asset(graph)],
        )


@pytest.mark.parametrize("returned", [None, 42, "rows"])
def test_a_compute_returning_no_dataframe_fails_with_a_clear_message(graph, resources, returned):
    video = mxd.feature_assets(
        graph, {"video": COMPUTES["video"]}, sources={"video": lambda: _inputs()}
    )

    @mxd.feature_asset(graph, "crop", partitions_def=None)
    def crop(context, increment):
        return returned

    result = dg.materialize([*video, crop], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message
    assert f"returned {type(returned).__name__}; return a dataframe" in message


def _inputs() -> pl.DataFrame:
    from tests.core.video import inputs

    return inputs(3)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: mxd.build_definitions(None, {}, {}),
        lambda g: mxd.build_definitions(g, None, {}),
        lambda g: mxd.build_definitions(g, {"video": 1}, {}),
        lambda g: mxd.cleanup_sensor(None),
        lambda g: mxd.batch_partitions(1),
        lambda g: mxd.feature_assets(None, {}),
        lambda g: mxd.feature_asset(None, "crop"),
    ],
)
def test_arguments_of_the_wrong_shape_are_spec_errors(graph, call):
    with pytest.raises(mx.SpecError):
        call(graph)


def test_a_first_run_that_keeps_no_rows_succeeds_and_says_what_is_pending(graph, store):
    computes = dict(COMPUTES) | {"crop": lambda context, inc: inc.to_compute().clear()}
    resource = mxd.MetaxyStore(graph=graph, store=store)
    defs = mxd.build_definitions(graph, computes, {"video": _inputs}, store=resource, mode="none")
    result = defs.resolve_job_def("metaxy_job").execute_in_process(raise_on_error=False)
    assert result.success and not store.has_feature("crop")
    checks = {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name): (
            e.event_specific_data
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks[("crop", "metaxy_provenance")].passed
    assert not checks[("crop", "metaxy_nothing_pending")].passed  # its 3 samples are still new
