"""Load a registered model by alias and predict: the identical model from anywhere.

    python examples/load_model.py [--model iris-classifier] [--alias champion]

Uses the same environment as track_experiment.py (MLFLOW_TRACKING_URI and credentials, or
MLFLOW_TRACKING_AUTH=deployer-iap for the cloud server).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np

# Written by the MLflow client next to a model downloaded by name; not part of the model.
CLIENT_BOOKKEEPING = {"registered_model_meta"}


def model_digest(path: Path) -> str:
    """A digest of every file of the model, to show two machines got the same bytes."""
    digest = hashlib.sha256()
    files = [p for p in path.rglob("*") if p.is_file() and p.name not in CLIENT_BOOKKEEPING]
    for f in sorted(files, key=lambda p: p.relative_to(path).as_posix()):
        digest.update(f.relative_to(path).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="iris-classifier")
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("Set MLFLOW_TRACKING_URI first.", file=sys.stderr)
        return 2

    uri = f"models:/{args.model}@{args.alias}"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        print(f"{uri} sha256 {model_digest(local)}")
        model = mlflow.pyfunc.load_model(str(local))
        sample = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
        print(f"prediction for 2 iris flowers: {list(model.predict(sample))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
