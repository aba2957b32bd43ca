"""The README's "API at a glance" runs as written and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def glance_block() -> str:
    section = README.read_text().split("## API at a glance", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_api_at_a_glance_is_short():
    assert len(glance_block().strip().splitlines()) < 40


def test_api_at_a_glance_prints_what_it_says():
    code = glance_block()
    promised = [
        line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(")
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == promised
