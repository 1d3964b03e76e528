"""Log params, a metric series, an artifact and a registered model version to MLflow.

Runs unchanged against `deployer local` and the cloud server: it only reads the standard
MLflow environment (MLFLOW_TRACKING_URI plus MLFLOW_TRACKING_USERNAME/PASSWORD locally, or
MLFLOW_TRACKING_AUTH=deployer-iap for the IAP-protected server).

    python examples/track_experiment.py [--experiment NAME] [--model NAME] [--alias champion]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="iris-demo")
    parser.add_argument("--model", default="iris-classifier")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print(
            "Set MLFLOW_TRACKING_URI first (deployer local prints the lines to paste).",
            file=sys.stderr,
        )
        return 2

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    params = {"loss": "log_loss", "alpha": 1e-3, "epochs": args.epochs, "random_state": 0}

    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        model = SGDClassifier(loss=params["loss"], alpha=params["alpha"], random_state=0)
        for epoch in range(args.epochs):
            model.partial_fit(X_train, y_train, classes=np.unique(y))
            mlflow.log_metric("train_accuracy", model.score(X_train, y_train), step=epoch)
            mlflow.log_metric("test_accuracy", model.score(X_test, y_test), step=epoch)

        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            report.write_text(
                json.dumps(
                    {"test_accuracy": model.score(X_test, y_test), "n_test": len(y_test)}, indent=2
                )
            )
            mlflow.log_artifact(str(report), artifact_path="reports")

        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=X_test[:2],
            registered_model_name=args.model,
        )
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(args.model, args.alias, version)
    print(f"run {run.info.run_id} logged to experiment {args.experiment!r}")
    print(f"registered {args.model} version {version} as @{args.alias}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
