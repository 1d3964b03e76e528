#!/bin/sh
# Install the server (the `server` extra: MLflow's server, gunicorn, database drivers; not the
# client or test tools) into a virtual environment at $1, from this repository, at the versions
# pinned in constraints.txt. The Dockerfile runs exactly this; so does the test that starts the
# entrypoint from a clean install (tests/test_image.py), so what is tested is what ships.
set -eu
venv="${1:?usage: image/install.sh VENV_DIR}"
src="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet \
    -c "$src/constraints.txt" "$src[server]"
# Byte-code caches and pip itself are not needed at run time.
"$venv/bin/pip" uninstall --yes --quiet pip
find "$venv" -name '__pycache__' -type d -prune -exec rm -rf {} +
