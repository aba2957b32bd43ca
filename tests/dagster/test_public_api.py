import types

import metaxy_dagster
from metaxy_dagster import testing


def test_all_is_exactly_the_public_surface():
    public = {
        n
        for n, v in vars(metaxy_dagster).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert set(metaxy_dagster.__all__) == public
    assert metaxy_dagster.__all__ == sorted(metaxy_dagster.__all__)


def test_the_testing_module_exports_the_sensor_tester():
    assert testing.__all__ == ["SensorStep", "SensorTester", "apply_partition_requests"]
    public = {n for n in vars(testing) if not n.startswith("_")}
    assert public == set(testing.__all__)
