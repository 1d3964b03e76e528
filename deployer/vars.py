"""The vars file: every setting of one environment, in TOML, read and checked in one place.

The keys are terraform/variables.tf's names (a test keeps the two identical) plus two of the
deployer's own: `state_bucket` (where Terraform keeps its state) and `environment` (a name, so
several environments - staging, prod - live side by side with their own state).

`load` never stops at the first problem: it returns every one, each with its line, so a person
fixes the file in one pass. Nothing is written anywhere while validating.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.server.settings import SettingsError, size_pool

MEMBER = re.compile(
    r"^(user|group|serviceAccount):[^@\s]+@[^@\s]+\.[a-z]{2,}$|^domain:[a-z0-9.-]+\.[a-z]{2,}$"
)
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
TIER = re.compile(r"^db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+|perf-optimized-N-[0-9]+)$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# Cloud SQL's default max_connections for the small tiers; larger tiers allow at least 100.
TIER_CONNECTIONS = {"db-f1-micro": 25, "db-g1-small": 50}
DEPLOYER_ONLY = ("environment", "state_bucket")


class VarsError(ValueError):
    """The file cannot be read at all (missing, not TOML)."""


@dataclass(frozen=True)
class Problem:
    line: int | None
    key: str
    message: str

    def render(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: {self.key}: {self.message}"


Check = Callable[[Any], str | None]


def _regex(pattern: re.Pattern[str], hint: str) -> Check:
    return lambda v: None if isinstance(v, str) and pattern.match(v) else hint


def _optional(check: Check) -> Check:
    return lambda v: None if v == "" else check(v)


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _int_range(low: int, high: int) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return "must be a whole number"
        return None if low <= v <= high else f"must be between {low} and {high}"

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _cidr(prefix_max: int, exact: bool = False) -> Check:
    def check(v: Any) -> str | None:
        try:
            net = ipaddress.IPv4Network(v)
        except (ValueError, TypeError):
            return "must be an IPv4 range such as 10.8.1.0/28"
        if exact and net.prefixlen != prefix_max:
            return f"must be a /{prefix_max} range"
        if not exact and net.prefixlen > prefix_max:
            return f"must be a /{prefix_max} range or larger"
        return None

    return check


def _members(v: Any) -> str | None:
    if not isinstance(v, list) or not v:
        return 'must list at least one member, e.g. ["user:you@example.com"]'
    bad = [m for m in v if not isinstance(m, str) or not MEMBER.match(m)]
    if bad:
        return (
            f"{bad[0]!r} is not a member: use user:EMAIL, group:EMAIL, domain:DOMAIN "
            "or serviceAccount:EMAIL"
        )
    return None


ADMIN_MEMBER = re.compile(r"(user|serviceAccount):[^@\s:,]+@[^@\s:,]+\.[a-z]{2,}")


def _admin_members(v: Any) -> str | None:
    if not isinstance(v, list):
        return 'must list members, e.g. ["user:you@example.com"] (empty: the deploying owner)'
    bad = [m for m in v if not isinstance(m, str) or not ADMIN_MEMBER.fullmatch(m)]
    if bad:
        return f"{bad[0]!r} is not user:EMAIL or serviceAccount:EMAIL"
    return None


def owner_member(account: str) -> str:
    """The IAM member of a gcloud account (people and service accounts both deploy)."""
    kind = "serviceAccount" if account.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{account}"


OAUTH_CLIENT_ID = re.compile(r"[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com")


def _client_ids(v: Any) -> str | None:
    if not isinstance(v, list):
        return 'must list OAuth client IDs, e.g. ["1234-abcd.apps.googleusercontent.com"]'
    bad = [c for c in v if not isinstance(c, str) or not OAUTH_CLIENT_ID.fullmatch(c)]
    if bad:
        return f"{bad[0]!r} is not an OAuth client ID such as 1234-abcd.apps.googleusercontent.com"
    return None


def _labels(v: Any) -> str | None:
    if not isinstance(v, dict):
        return 'must be a table such as { team = "ml" }'
    for k, val in v.items():
        if (
            not re.match(r"^[a-z][a-z0-9_-]{0,62}$", k)
            or not isinstance(val, str)
            or not re.match(r"^[a-z0-9_-]{0,63}$", val)
        ):
            return f"{k} = {val!r}: keys and values must be lowercase letters, digits, _ or -"
    return None


@dataclass(frozen=True)
class Field:
    name: str
    default: Any
    help: str
    check: Check
    terraform: bool = True
    prompt: bool = False

    @property
    def required(self) -> bool:
        return self.default is None


FIELDS: tuple[Field, ...] = (
    Field(
        "environment",
        "default",
        "A name for this deployment (its own state and folder).",
        _regex(re.compile(r"^[a-z][a-z0-9-]{0,19}$"), "must be lowercase letters, digits or -"),
        terraform=False,
        prompt=True,
    ),
    Field(
        "project_id",
        None,
        "The GCP project ID to deploy into.",
        _regex(PROJECT_ID, "is not a project ID (6-30 lowercase letters, digits or -)"),
        prompt=True,
    ),
    Field(
        "region",
        "us-central1",
        "Region for everything (Cloud Run, Cloud SQL, bucket).",
        _regex(REGION, "is not a region such as us-central1 or europe-west1"),
        prompt=True,
    ),
    Field(
        "state_bucket",
        None,
        "Bucket for Terraform's state (created with versioning).",
        _regex(BUCKET, "is not a valid bucket name"),
        terraform=False,
        prompt=True,
    ),
    Field(
        "web_app_users",
        None,
        "Who may use MLflow: user:/group:/domain:/serviceAccount:.",
        _members,
        prompt=True,
    ),
    Field(
        "web_app_admins",
        [],
        "Who may delete experiments and models, manage webhooks and the gateway (empty: owner).",
        _admin_members,
    ),
    Field(
        "iap_programmatic_clients",
        [],
        "Desktop OAuth client IDs IAP allowlists, for `deployer login` (empty: none).",
        _client_ids,
    ),
    Field(
        "service_name",
        "mlflow",
        "Cloud Run service name, prefix of the other names.",
        _regex(
            re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$"),
            "must be 1-20 lowercase letters, digits or -",
        ),
    ),
    Field(
        "network_name",
        "",
        "Existing VPC network to reuse (empty: create one).",
        _optional(_regex(NAME, "is not a network name")),
    ),
    Field(
        "subnetwork_name",
        "",
        "With network_name and direct egress: its subnetwork.",
        _optional(_regex(NAME, "is not a subnetwork name")),
    ),
    Field(
        "vpc_egress",
        "direct",
        "connector (serverless VPC connector, ~$12/month) or direct (Direct VPC egress, $0).",
        _one_of("connector", "direct"),
        prompt=True,
    ),
    Field("connector_cidr", "10.8.1.0/28", "The connector's /28 range.", _cidr(28, exact=True)),
    Field(
        "subnetwork_cidr", "10.8.0.0/26", "Direct-egress subnetwork range (new network).", _cidr(26)
    ),
    Field(
        "db_engine",
        "postgresql",
        "postgresql (16) or mysql (8.0).",
        _one_of("postgresql", "mysql"),
        prompt=True,
    ),
    Field(
        "db_tier",
        "db-f1-micro",
        "db-f1-micro (~$8/month), db-g1-small (~$26), db-custom-CPUS-MB, db-perf-optimized-N-N.",
        _regex(
            TIER,
            "must be db-f1-micro, db-g1-small, db-custom-CPUS-MEMORY_MB or "
            "db-perf-optimized-N-CPUS",
        ),
        prompt=True,
    ),
    Field(
        "db_reserved_connections",
        5,
        "Connections kept free for jobs and admins.",
        _int_range(3, 100),
    ),
    Field("deletion_protection", True, "Protect database and service from deletion.", _bool),
    Field(
        "artifacts_force_destroy", False, "Let destroy delete a non-empty artifact bucket.", _bool
    ),
    Field(
        "artifacts_bucket_name",
        "",
        "Artifact bucket name (empty: PROJECT-SERVICE-artifacts).",
        _optional(_regex(BUCKET, "is not a valid bucket name")),
    ),
    Field(
        "min_instances",
        0,
        "Warm instances (0 scales to zero; each warm one bills 24/7).",
        _int_range(0, 10),
        prompt=True,
    ),
    Field(
        "max_instances",
        1,
        "Instances at most (must fit the tier's connections).",
        _int_range(1, 100),
    ),
    Field("server_workers", 2, "Server processes per instance.", _int_range(1, 8)),
    Field("server_threads", 4, "Threads per server process.", _int_range(1, 32)),
    Field("cpu", "1", "vCPUs per instance: 1, 2 or 4.", _one_of("1", "2", "4")),
    Field(
        "memory",
        "1Gi",
        "Memory per instance, e.g. 1Gi.",
        _regex(re.compile(r"^[0-9]+(Mi|Gi)$"), "must look like 512Mi or 2Gi"),
    ),
    Field(
        "custom_domain",
        "",
        "A custom domain mapped to the service (empty: none).",
        _optional(
            _regex(
                re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,}$"),
                "is not a host name such as mlflow.example.com",
            )
        ),
    ),
    Field("labels", {}, 'Labels for every resource, e.g. { team = "ml" }.', _labels),
    Field(
        "github_repository",
        "",
        "OWNER/REPO whose Actions may reach MLflow (empty: none).",
        _optional(_regex(re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"), "must be OWNER/REPO")),
    ),
)
BY_NAME = {f.name: f for f in FIELDS}


@dataclass
class Settings:
    values: dict[str, Any]
    path: Path | None = None
    problems: list[Problem] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def environment(self) -> str:
        return self.values["environment"]

    def tfvars(self, image: str, owner: str | None = None) -> dict[str, Any]:
        """Terraform's variables, exactly: every Terraform field plus the image.

        An empty `web_app_admins` means the deploying owner (`owner`, their gcloud account).
        """
        out = {f.name: self.values[f.name] for f in FIELDS if f.terraform}
        out["image"] = image
        if not out.get("web_app_admins") and owner:
            out["web_app_admins"] = [owner_member(owner)]
        return out


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _cross_checks(values: Mapping[str, Any], bad: set[str]) -> list[tuple[str, str]]:
    """Checks across fields, skipped where a field they use is itself malformed."""
    problems: list[tuple[str, str]] = []
    budget = {
        "db_tier",
        "max_instances",
        "server_workers",
        "db_reserved_connections",
        "min_instances",
    }
    if budget & bad:
        return problems
    try:
        cap = TIER_CONNECTIONS.get(values["db_tier"], 100)
        # The server's own pool sizing decides; a setting it would refuse is refused here first.
        try:
            size_pool(
                cap,
                values["db_reserved_connections"],
                values["max_instances"],
                values["server_workers"],
            )
        except SettingsError:
            instances, workers = values["max_instances"], values["server_workers"]
            reserved, tier = values["db_reserved_connections"], values["db_tier"]
            needed = instances * (workers + 1) * 2 * 2
            message = (
                f"{instances} instances x ({workers} workers + 1) x 2 pools x 2 connections = "
                f"{needed} exceeds {tier}'s {cap} connections minus {reserved} reserved: "
                "lower max_instances or server_workers, or pick a larger db_tier"
            )
            problems.append(("max_instances", message))
        if values["min_instances"] > values["max_instances"]:
            problems.append(("min_instances", "must not exceed max_instances"))
    except (TypeError, KeyError):
        pass  # the fields themselves are reported as malformed
    if (
        values.get("vpc_egress") == "direct"
        and values.get("network_name")
        and not values.get("subnetwork_name")
    ):
        problems.append(
            ("subnetwork_name", "direct egress into an existing network needs its subnetwork_name")
        )
    return problems


def parse(text: str, path: Path | None = None, environment_hint: str | None = None) -> Settings:
    """Parse and check; every problem is collected in `Settings.problems`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", None)
        m = re.search(r"at line (\d+)", str(e))
        return Settings(
            {},
            path,
            [
                Problem(
                    line or (int(m.group(1)) if m else None),
                    "syntax",
                    f"not valid TOML ({e}); see vars.example",
                )
            ],
        )
    problems: list[Problem] = []
    for key in raw:
        if key not in BY_NAME:
            close = [f.name for f in FIELDS if f.name.split("_")[0] == key.split("_")[0]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(Problem(_line_of(text, key), key, f"unknown setting{hint}"))
    values: dict[str, Any] = {}
    for f in FIELDS:
        if f.name in raw:
            value = raw[f.name]
        elif f.name == "environment" and environment_hint:
            value = environment_hint
        elif f.required:
            problems.append(Problem(None, f.name, f"is required: {f.help}"))
            continue
        else:
            value = f.default
        message = f.check(value)
        if message:
            shown = f"{value!r} {message}" if isinstance(value, str | int) else message
            problems.append(Problem(_line_of(text, f.name), f.name, shown))
        values[f.name] = value
    bad = {p.key for p in problems}
    for key, message in _cross_checks(values, bad):
        problems.append(Problem(_line_of(text, key), key, message))
    return Settings(values, path, problems)


def environment_from_path(path: Path) -> str | None:
    """vars.staging -> staging; vars / vars.toml -> None (the file or default decides)."""
    suffix = path.name.split(".", 1)[1] if "." in path.name else ""
    if suffix and suffix not in ("toml", "example") and re.match(r"^[a-z][a-z0-9-]*$", suffix):
        return suffix
    return None


def load(path: Path) -> Settings:
    if not path.exists():
        raise VarsError(f"{path} does not exist: run `deployer init` (or copy vars.example)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VarsError(f"cannot read {path}: {e}") from None
    return parse(text, path, environment_from_path(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r}")


def render(values: Mapping[str, Any]) -> str:
    """A vars file with every setting, commented, in FIELDS order."""
    lines = [
        "# MLflow on GCP: the settings of one environment (deployer init wrote this).",
        "# Check it with `deployer validate --vars FILE`; see vars.example for every option.",
        "",
    ]
    for f in FIELDS:
        lines.append(f"# {f.help}")
        lines.append(f"{f.name} = {_toml_value(values.get(f.name, f.default))}")
        lines.append("")
    return "\n".join(lines)


def coerce(key: str, raw: str) -> Any:
    """A value typed at a prompt or given with --set, as the field's type."""
    f = BY_NAME[key]
    raw = raw.strip()
    if isinstance(f.default, bool):
        return {"true": True, "yes": True, "false": False, "no": False}.get(raw.lower(), raw)
    if isinstance(f.default, int):
        try:
            return int(raw)
        except ValueError:
            return raw
    if key in ("web_app_users", "web_app_admins", "iap_programmatic_clients"):
        return [m.strip() for m in raw.split(",") if m.strip()]
    if key == "labels":
        pairs = [p.split("=", 1) for p in raw.split(",") if "=" in p]
        return {k.strip(): v.strip() for k, v in pairs}
    return raw
