#!/usr/bin/env bash
# Create benchmarks/.peer-venv: its own virtual environment for the peer (metaxy 0.1.11),
# from the pinned benchmarks/peer-requirements.txt. Only PyPI is needed.
# Usage: bash benchmarks/setup_peer.sh   (re-running is cheap: pip skips what is there)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peer-venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/peer-requirements.txt"
"$venv/bin/python" -c "import importlib.metadata as m; print('peer venv ready:', ', '.join(p + ' ' + m.version(p) for p in ('metaxy', 'polars', 'duckdb', 'deltalake', 'narwhals', 'sqlglot', 'ibis-framework')))"
