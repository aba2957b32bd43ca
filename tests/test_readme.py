"""The README's "API at a glance" runs as written and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    section = README.read_text().split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def glance_block() -> str:
    return python_block("API at a glance")


def run_and_compare(code: str) -> None:
    """Run a README block; what it prints must be what its `print(...)  # ...` lines promise."""
    promised = [
        line.split("#", 1)[1].strip()
        for line in code.splitlines()
        if line.lstrip().startswith("print(")
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == promised


def test_api_at_a_glance_is_short():
    assert len(glance_block().strip().splitlines()) < 40


def test_api_at_a_glance_prints_what_it_says():
    run_and_compare(glance_block())


def test_evolving_features_prints_what_it_says():
    run_and_compare(python_block("Evolving features"))


def test_reading_upstream_features_then_testing_a_code_location_print_what_they_say():
    # The testing section continues the upstream section's example (its graph and compute).
    code = python_block("Reading upstream features in a compute")
    run_and_compare(code + python_block("Testing a code location"))


def test_failing_samples_prints_what_it_says():
    # It continues the upstream section's example (its features and compute).
    code = python_block("Reading upstream features in a compute")
    run_and_compare(code + python_block("Failing samples: retries, quarantine, skips"))


def test_change_detection_prints_what_it_says():
    run_and_compare(python_block("Change detection"))
