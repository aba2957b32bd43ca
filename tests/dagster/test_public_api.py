import metaxy_dagster


def test_all_is_exactly_the_public_surface():
    public = {n for n in dir(metaxy_dagster) if not n.startswith("_")}
    assert set(metaxy_dagster.__all__) == public
    assert metaxy_dagster.__all__ == sorted(metaxy_dagster.__all__)
