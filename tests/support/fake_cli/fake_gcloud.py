"""A stand-in `gcloud` for deployer tests: records its argv and answers in gcloud's formats.

State lives in $FAKE_CLOUD_DIR (buckets, images, job runs); $FAKE_CLI_LOG gets one JSON line
per call. $FAKE_PROJECT is the one project that exists; $FAKE_BILLING=off turns billing off;
$FAKE_LOGGED_OUT=1 is a machine nobody logged in on; $FAKE_ORG_DOMAIN names the project's
organisation (empty: none); buckets listed in $FAKE_FOREIGN_BUCKETS belong to another project.
"""

import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_CLOUD_DIR"])
PROJECT = os.environ.get("FAKE_PROJECT", "acme-ml")


def record(tool: str) -> None:
    with open(os.environ["FAKE_CLI_LOG"], "a") as f:
        f.write(json.dumps({"tool": tool, "argv": sys.argv[1:]}) + "\n")


def load(name: str, default):
    path = STATE / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, value) -> None:
    (STATE / f"{name}.json").write_text(json.dumps(value))


def fail(message: str, code: int = 1) -> None:
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(code)


def flag(name: str, default=None):
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


PROJECT_NUMBER = "123456789012"
LOGGED_OUT = os.environ.get("FAKE_LOGGED_OUT") == "1"
NO_ADC = (
    "ERROR: (gcloud.auth.application-default.print-access-token) Your default credentials were "
    "not found. To set up Application Default Credentials, see "
    "https://cloud.google.com/docs/authentication/external/set-up-adc for more information."
)


def logged_out(cmd: str) -> bool:
    """gcloud's answers on a machine nobody logged in on (True when it answered)."""
    if cmd.startswith("auth list"):
        print("[]")
    elif cmd.startswith("auth application-default"):
        print(NO_ADC, file=sys.stderr)
        sys.exit(1)
    elif not cmd.startswith("version"):
        fail(
            "(gcloud) You do not currently have an active account selected. Please run:\n\n"
            "  $ gcloud auth login"
        )
    return not cmd.startswith("version")


def organisation(args: list[str]) -> None:
    domain = os.environ.get("FAKE_ORG_DOMAIN", "example.com")
    if args[:2] == ["projects", "get-ancestors"]:
        ancestors = [{"id": PROJECT, "type": "project"}]
        if domain:
            ancestors.append({"id": "555", "type": "organization"})
        print(json.dumps(ancestors))
    else:
        print(json.dumps({"displayName": domain, "name": "organizations/555"}))


def main() -> None:
    record("gcloud")
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    cmd = " ".join(args[:3])
    if LOGGED_OUT and logged_out(cmd):
        return
    if args[:2] in (["projects", "get-ancestors"], ["organizations", "describe"]):
        organisation(args)
    elif args[:1] == ["version"]:
        print(json.dumps({"Google Cloud SDK": "528.0.0", "bq": "2.1.17", "core": "2025.06.20"}))
    elif cmd.startswith("auth list"):
        print(json.dumps([{"account": "owner@example.com", "status": "ACTIVE"}]))
    elif cmd.startswith("auth application-default print-access-token"):
        print("ya29.fake-owner-token")
    elif cmd.startswith("auth configure-docker"):
        print("Docker configuration file updated.", file=sys.stderr)
    elif cmd.startswith("projects describe"):
        if args[2] != PROJECT:
            fail(
                f"(gcloud.projects.describe) [owner@example.com] does not have permission to "
                f"access projects instance [{args[2]}] (or it may not exist)"
            )
        print(
            json.dumps(
                {
                    "projectId": PROJECT,
                    "projectNumber": PROJECT_NUMBER,
                    "lifecycleState": "ACTIVE",
                    "name": "Acme ML",
                }
            )
        )
    elif cmd.startswith("billing projects describe"):
        enabled = os.environ.get("FAKE_BILLING") != "off"
        print(
            json.dumps(
                {
                    "billingAccountName": "billingAccounts/0X0X0X" if enabled else "",
                    "billingEnabled": enabled,
                    "name": f"projects/{PROJECT}/billingInfo",
                    "projectId": PROJECT,
                }
            )
        )
    elif cmd.startswith("projects get-iam-policy"):
        print(
            json.dumps(
                {
                    "bindings": [{"role": "roles/owner", "members": ["user:owner@example.com"]}],
                    "etag": "BwX=",
                    "version": 1,
                }
            )
        )
    elif cmd.startswith("run regions list"):
        regions = os.environ.get("FAKE_RUN_REGIONS", "us-central1,europe-west1").split(",")
        print(json.dumps([{"locationId": r} for r in regions]))
    elif cmd.startswith("services list"):
        print(json.dumps([{"config": {"name": "compute.googleapis.com"}, "state": "ENABLED"}]))
    elif cmd.startswith("storage buckets describe"):
        buckets = load("buckets", {})
        foreign = args[3][5:] in os.environ.get("FAKE_FOREIGN_BUCKETS", "").split(",")
        if args[3] not in buckets and not foreign:
            fail(f"(gcloud.storage.buckets.describe) {args[3]} not found: 404.")
        print(
            json.dumps(
                {
                    "name": args[3][5:],
                    "project_number": "999999999999" if foreign else PROJECT_NUMBER,
                    "versioning_enabled": buckets.get(args[3], True),
                }
            )
        )
    elif cmd.startswith("storage buckets create"):
        buckets = load("buckets", {})
        buckets[args[3]] = False
        save("buckets", buckets)
        print(f"Creating {args[3]}/...", file=sys.stderr)
    elif cmd.startswith("storage buckets update"):
        buckets = load("buckets", {})
        buckets[args[3]] = "--versioning" in sys.argv
        save("buckets", buckets)
    elif cmd.startswith("artifacts docker images"):
        if args[4] not in load("images", []):
            fail(f"(gcloud.artifacts.docker.images.describe) Image not found: {args[4]}")
        print(
            json.dumps(
                {"image_summary": {"fully_qualified_digest": args[4] + "@sha256:" + "a" * 64}}
            )
        )
    elif cmd.startswith("builds submit"):
        image = flag("--substitutions").split("=", 1)[1]
        for step in (
            "Creating temporary archive",
            "Uploading tarball",
            "Step #0: docker build",
            "PUSH",
            "DONE",
        ):
            print(step, flush=True)
            time.sleep(0.01)
        images = load("images", [])
        images.append(image)
        save("images", images)
    elif cmd.startswith("run jobs execute"):
        runs = load("jobs", [])
        runs.append(args[3])
        save("jobs", runs)
        print(f"Creating execution... {args[3]}-abc12 done", flush=True)
        print(
            json.dumps({"metadata": {"name": f"{args[3]}-abc12"}, "status": {"succeededCount": 1}})
        )
    elif cmd.startswith("beta services identity"):
        if flag("--service") != "iap.googleapis.com":
            fail(f"(gcloud.beta.services.identity.create) unknown service {flag('--service')}")
        agents = load("service_agents", [])
        if flag("--service") not in agents:
            agents.append(flag("--service"))
            save("service_agents", agents)
        number = "123456789012"
        print(json.dumps({"email": f"service-{number}@gcp-sa-iap.iam.gserviceaccount.com"}))
    elif cmd.startswith("services vpc-peerings list"):
        # $FAKE_CLOUD_DIR/peerings.json: {network: [reserved range names]} set by a test.
        ranges = load("peerings", {}).get(flag("--network"))
        connections = (
            []
            if ranges is None
            else [
                {
                    "network": f"projects/123456789012/global/networks/{flag('--network')}",
                    "peering": "servicenetworking-googleapis-com",
                    "reservedPeeringRanges": ranges,
                    "service": "services/servicenetworking.googleapis.com",
                }
            ]
        )
        print(json.dumps(connections))
    elif cmd.startswith("compute networks peerings"):
        removed = load("removed_peerings", [])
        if (args[4], flag("--network")) in [tuple(r) for r in removed]:
            fail(f"(gcloud.compute.networks.peerings.delete) peering {args[4]} not found")
        removed.append([args[4], flag("--network")])
        save("removed_peerings", removed)
        print(f"Updated [https://compute.googleapis.com/.../networks/{flag('--network')}].")
    elif cmd.startswith("run services describe"):
        image = (load("images", []) or ["?"])[-1]
        print(
            json.dumps(
                {
                    "metadata": {"name": args[3]},
                    "spec": {"template": {"spec": {"containers": [{"image": image}]}}},
                    "status": {
                        "latestReadyRevisionName": f"{args[3]}-00001-abc",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            )
        )
    elif cmd.startswith("sql instances describe"):
        # Activation policies in $FAKE_CLOUD_DIR/sql.json; a stopped instance stays RUNNABLE.
        policy = load("sql", {}).get(args[3], "ALWAYS")
        print(
            json.dumps(
                {"name": args[3], "state": "RUNNABLE", "settings": {"activationPolicy": policy}}
            )
        )
    elif cmd.startswith("sql instances patch"):
        sql = load("sql", {})
        sql[args[3]] = flag("--activation-policy")
        save("sql", sql)
        print(
            f"Patching Cloud SQL instance...done.\nUpdated [.../instances/{args[3]}].",
            file=sys.stderr,
        )
    else:
        fail(f"fake gcloud does not know: {' '.join(sys.argv[1:])}", 2)


main()
