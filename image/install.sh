#!/bin/sh
# Install the server (the `server` extra: MLflow's server, gunicorn, database drivers; not the
# client or test tools) into a virtual environment at $1, from this repository, at the versions
# pinned in constraints.txt. The Dockerfile runs exactly this; so does the test that starts the
# entrypoint from a clean install (tests/test_image.py), so what is tested is what ships.
set -eu
venv="${1:?usage: image/install.sh VENV_DIR}"
src="$(cd "$(dirname "$0")/.." && pwd)"
# Only the server package ships: deployer/server imports nothing else of the deployer (a test
# checks), so the owner's CLI, the client plugin and their data stay out of the image.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/deployer"
cp "$src/pyproject.toml" "$src/README.md" "$src/constraints.txt" "$stage/"
cp "$src/deployer/__init__.py" "$stage/deployer/"
cp -r "$src/deployer/server" "$stage/deployer/server"
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet \
    -c "$src/constraints.txt" "$stage[server]"
# The `deployer` command is in the package's metadata but not in the image: drop its script.
rm -f "$venv/bin/deployer"
# MLflow's full package requires these for its client-side flavors and evaluation plots. The
# server needs none: pandas and mlflow.models.utils try pyarrow and scipy and go on without
# them (ImportError caught), PIL serves only clients logging images, sklearn, skops and
# matplotlib only mlflow.sklearn and mlflow.models.evaluation, pyarrow also HDFS artifacts.
# About 380 MB of the image; tests/test_image.py serves each kind of route without them.
"$venv/bin/pip" uninstall --yes --quiet \
    pyarrow scipy scikit-learn joblib threadpoolctl skops \
    matplotlib contourpy cycler fonttools kiwisolver pillow
# Byte-code caches and pip itself are not needed at run time.
"$venv/bin/pip" uninstall --yes --quiet pip
find "$venv" -name '__pycache__' -type d -prune -exec rm -rf {} +
