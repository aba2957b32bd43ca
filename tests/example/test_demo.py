"""The demo through Dagster: sensor ticks on a temporary instance, runs executed, exact counts."""

import pytest

from example_project.demo import run_demo

N = 1797
ALL = ("image", "augmented", "caption", "normalized", "embedding", "class_summary")


def counts(step, feature):
    c = step.feature_counts()[feature]
    return c["new"], c["stale"], c["orphaned"], c["rows_written"]


@pytest.mark.slow
def test_demo_steps_compute_exactly_what_changed(capsys):
    reports = run_demo()
    first = reports["first run"]
    assert sorted(first.feature_counts()) == sorted(ALL)
    for feature in ("image", "caption", "normalized", "embedding"):
        assert counts(first, feature) == (N, 0, 0, N)
    assert counts(first, "augmented") == (N, 0, 0, 4 * N)  # four variants per image
    assert counts(first, "class_summary") == (10, 0, 0, 10)

    assert reports["rerun"].runs == ()
    assert reports["rerun"].skip_reason.startswith("No changed samples")

    bump = reports["code bump"]
    assert sorted(bump.feature_counts()) == ["class_summary", "embedding", "normalized"]
    assert counts(bump, "normalized") == (0, N, 0, N)
    assert counts(bump, "embedding") == (0, N, 0, N)
    assert counts(bump, "class_summary") == (0, 10, 0, 10)

    edited = reports["edited images"]
    assert "caption" not in edited.feature_counts()  # reads the label only
    for feature in ("image", "normalized", "embedding"):
        assert counts(edited, feature) == (0, 3, 0, 3)
    assert counts(edited, "augmented") == (0, 3, 0, 12)
    assert counts(edited, "class_summary") == (0, 3, 0, 3)  # the classes 0, 1 and 8

    printed = capsys.readouterr().out
    assert "normalized     0 new, 1797 stale, 0 orphaned" in printed
    assert "caption        not selected" in printed
