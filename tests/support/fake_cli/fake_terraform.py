"""A stand-in `terraform` for deployer tests, answering in Terraform's own formats.

It keeps a state per backend (bucket + prefix) in $FAKE_CLOUD_DIR: which tfvars were applied,
for which targets. `plan -detailed-exitcode` exits 2 when the tfvars or targets differ from the
applied ones, 0 when nothing would change. $FAKE_FAIL_ONCE=apply makes the next apply fail half
way, once. $FAKE_SERVICE_URL is the service URL the outputs report.
"""

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_CLOUD_DIR"])
data_dir = Path(os.environ.get("TF_DATA_DIR", ".terraform"))


def record() -> None:
    with open(os.environ["FAKE_CLI_LOG"], "a") as f:
        f.write(
            json.dumps({"tool": "terraform", "argv": sys.argv[1:], "data_dir": str(data_dir)})
            + "\n"
        )


def opt(args, name):
    return [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]


def backend_state() -> Path:
    backend = json.loads((data_dir / "backend.json").read_text())
    return STATE / f"tfstate-{backend['bucket']}-{backend['prefix'].replace('/', '_')}.json"


def load_state() -> dict:
    path = backend_state()
    return json.loads(path.read_text()) if path.exists() else {"applied": {}}


def main() -> None:
    record()
    args = [a for a in sys.argv[1:] if not a.startswith("-chdir=")]
    sub = args[0]
    if sub == "version":
        print(
            json.dumps(
                {
                    "terraform_version": os.environ.get("FAKE_TF_VERSION", "1.9.8"),
                    "platform": "linux_amd64",
                    "provider_selections": {},
                    "terraform_outdated": False,
                }
            )
        )
    elif sub == "init":
        buckets = (
            json.loads((STATE / "buckets.json").read_text())
            if (STATE / "buckets.json").exists()
            else {}
        )
        conf = dict(b.split("=", 1) for b in opt(args, "-backend-config"))
        if f"gs://{conf.get('bucket')}" not in buckets:
            print(
                "Error: Failed to get existing workspaces: querying Cloud Storage failed: "
                "storage: bucket doesn't exist",
                file=sys.stderr,
            )
            sys.exit(1)
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "backend.json").write_text(json.dumps(conf))
        print("Initializing the backend...\n\nTerraform has been successfully initialized!")
    elif sub == "plan":
        tfvars = json.loads(Path(opt(args, "-var-file")[0]).read_text())
        targets = sorted(opt(args, "-target"))
        key = ",".join(targets) or "*"
        state = load_state()
        destroy = "-destroy" in args
        same = state["applied"].get(key) == tfvars or (
            key != "*" and state["applied"].get("*") == tfvars
        )
        changes = destroy or not same
        plan = {"tfvars": tfvars, "targets": targets, "key": key, "changes": changes}
        Path(opt(args, "-out")[0]).write_text(json.dumps(plan))
        if not changes:
            print("No changes. Your infrastructure matches the configuration.")
            sys.exit(0)
        print("Terraform will perform the following actions:")
        print(f"Plan: {3 if targets else 42} to add, 0 to change, 0 to destroy.")
        sys.exit(2)
    elif sub == "show":
        plan = json.loads(Path(args[-1]).read_text())
        n = 3 if plan["targets"] else 42
        print(
            json.dumps(
                {
                    "format_version": "1.2",
                    "resource_changes": [
                        {"address": f"module.x.r{i}", "change": {"actions": ["create"]}}
                        for i in range(n)
                    ],
                }
            )
        )
    elif sub == "apply":
        plan = json.loads(Path(args[-1]).read_text())
        print(
            'module.apis.google_project_service.this["run.googleapis.com"]: Creating...',
            flush=True,
        )
        marker = STATE / "failed-once"
        if os.environ.get("FAKE_FAIL_ONCE") == "apply" and not marker.exists():
            marker.write_text("1")
            print(
                "Error: Error creating Instance: googleapi: Error 409: The instance or "
                "operation is not in an appropriate state to handle the request.",
                file=sys.stderr,
            )
            sys.exit(1)
        state = load_state()
        state["applied"][plan["key"]] = plan["tfvars"]
        backend_state().write_text(json.dumps(state))
        print(
            f"Apply complete! Resources: {3 if plan['targets'] else 42} added, 0 changed, "
            "0 destroyed."
        )
    elif sub == "output":
        state = load_state()
        tfvars = state["applied"].get("*")
        if not tfvars:
            print("{}")
            return
        url = os.environ.get("FAKE_SERVICE_URL", "https://mlflow-123456789012.us-central1.run.app")
        p = tfvars["project_id"]
        env = tfvars.get("environment", "default")
        name = tfvars["service_name"] + ("" if env == "default" else f"-{env}")
        values = {
            "service_url": url,
            "client_audience": f"{url}/*",
            "client_service_account": f"mlflow-log-pusher@{p}.iam.gserviceaccount.com",
            "artifacts_bucket": f"{p}-mlflow-artifacts",
            "cloud_sql_connection_name": f"{p}:{tfvars['region']}:mlflow-db-a1b2c3",
            "migration_job_name": f"{name}-migrate",
            "service_name": name,
            "region": tfvars["region"],
            "project_id": p,
            "workload_identity_provider": None,
            "image_repository": f"{tfvars['region']}-docker.pkg.dev/{p}/{name}",
            "resource_names": {"network": f"{name}-network", "repository": name},
        }
        print(
            json.dumps(
                {k: {"sensitive": False, "type": "string", "value": v} for k, v in values.items()}
            )
        )
    elif sub == "destroy":
        targets = sorted(opt(args, "-target"))
        state = load_state()
        if targets:
            state["destroyed_targets"] = targets
        else:
            state = {"applied": {}}
        state["applied"].pop("*", None)
        backend_state().write_text(json.dumps(state))
        print(f"Destroy complete! Resources: {12 if targets else 42} destroyed.")
    else:
        print(f"fake terraform does not know: {' '.join(sys.argv[1:])}", file=sys.stderr)
        sys.exit(2)


main()
