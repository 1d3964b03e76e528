"""One load client: a run, logging metrics, params and small artifacts for N seconds.

It reports what it sent (and every failed call) as JSON, so the test can compare the count with
what the database and the bucket hold.

    python load_client.py --seconds 20 --client 3 --report out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from mlflow import MlflowClient


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--client", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--experiment", default="load")
    parser.add_argument("--param-every", type=int, default=10)
    parser.add_argument("--artifact-every", type=int, default=40)
    args = parser.parse_args()

    client = MlflowClient()
    exp = client.get_experiment_by_name(args.experiment)
    exp_id = exp.experiment_id if exp else None
    if exp_id is None:
        try:
            exp_id = client.create_experiment(args.experiment)
        except Exception:  # another client created it first
            exp_id = client.get_experiment_by_name(args.experiment).experiment_id
    run = client.create_run(exp_id, tags={"load.client": str(args.client)})
    sent = {"metrics": 0, "params": 0, "artifacts": 0}
    failures: list[str] = []
    deadline = time.monotonic() + args.seconds
    step = 0
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < deadline:
            try:
                client.log_metric(
                    run.info.run_id,
                    "loss",
                    1.0 / (step + 1),
                    step=step,
                    timestamp=int(time.time() * 1000),
                )
                sent["metrics"] += 1
                if step % args.param_every == 0:
                    client.log_param(run.info.run_id, f"p{step}", str(step))
                    sent["params"] += 1
                if step % args.artifact_every == 0:
                    path = Path(tmp) / f"a{step}.txt"
                    path.write_bytes(os.urandom(2048))
                    client.log_artifact(run.info.run_id, str(path), "chunks")
                    sent["artifacts"] += 1
            except Exception as e:
                failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
                traceback.print_exc()
            step += 1
    client.set_terminated(run.info.run_id)
    args.report.write_text(
        json.dumps({"run_id": run.info.run_id, "sent": sent, "failures": failures, "steps": step})
    )
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
