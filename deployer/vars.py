"""The vars file: every setting of one environment, in TOML, read and checked in one place.

The keys are terraform/variables.tf's names (a test keeps the two identical) plus two of the
deployer's own: `state_bucket` (where Terraform keeps its state) and `environment` (a name, so
several environments - staging, prod - live side by side with their own state).

`load` never stops at the first problem: it returns every one, each with its line, so a person
fixes the file in one pass. Nothing is written anywhere while validating.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer import limits
from deployer.errors import DeployerError
from deployer.server.settings import SettingsError, size_pool

# Every pattern is matched against the whole value (re.fullmatch): `$` alone would accept a
# trailing newline, and "prod\n" would reach file paths and resource names.
MEMBER = re.compile(
    r"(user|group|serviceAccount):[^@\s]+@[^@\s]+\.[a-z]{2,}|domain:[a-z0-9.-]+\.[a-z]{2,}"
)
PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
TIER = re.compile(r"db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+|perf-optimized-N-[0-9]+)")
BUCKET = re.compile(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]")
NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
# GitHub's numeric repository and owner ids (strings, as terraform/variables.tf types them).
GITHUB_ID = re.compile(r"[0-9]{1,20}")
# Consumer accounts are in no organisation: IAP's Google-managed OAuth client refuses them.
CONSUMER_DOMAINS = ("gmail.com", "googlemail.com")


class VarsError(DeployerError, ValueError):
    """The file or a --set value cannot be used at all (missing, not TOML, unknown key)."""


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
    return lambda v: None if isinstance(v, str) and pattern.fullmatch(v) else hint


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


def _sleep_minutes(v: Any) -> str | None:
    """terraform/variables.tf's rule: shorter idle times would stop the database mid-session."""
    if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or 15 <= v <= 10080):
        return "must be 0 (never) or between 15 and 10080 minutes (a week)"
    return None


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
    bad = [m for m in v if not isinstance(m, str) or not MEMBER.fullmatch(m)]
    if bad:
        shown = repr(bad[0]) if isinstance(bad[0], str) and len(bad[0]) <= 80 else "an entry"
        return (
            f"{shown} is not a member: use user:EMAIL, group:EMAIL, domain:DOMAIN "
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
        if not LABEL_KEY.fullmatch(k) or not isinstance(val, str) or not LABEL_VALUE.fullmatch(val):
            return f"{k} = {val!r}: keys and values must be lowercase letters, digits, _ or -"
    return None


def _region(v: Any) -> str | None:
    if not isinstance(v, str) or not REGION.fullmatch(v):
        return "is not a region such as us-central1 or europe-west1"
    return limits.region_problem(v)


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
        _regex(re.compile(r"[a-z][a-z0-9-]{0,19}"), "must be lowercase letters, digits or -"),
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
        _region,
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
            re.compile(r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?"),
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
        _regex(re.compile(r"[0-9]+(Mi|Gi)"), "must look like 512Mi or 2Gi"),
    ),
    Field(
        "custom_domain",
        "",
        "A custom domain mapped to the service (empty: none).",
        _optional(
            _regex(
                re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,}"),
                "is not a host name such as mlflow.example.com",
            )
        ),
    ),
    Field("labels", {}, 'Labels for every resource, e.g. { team = "ml" }.', _labels),
    Field(
        "github_repository",
        "",
        "OWNER/REPO whose Actions may reach MLflow (empty: none).",
        _optional(_regex(re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"), "must be OWNER/REPO")),
    ),
    Field(
        "db_sleep_after_minutes",
        60,
        "Stop the idle database after this many minutes (0: never); it wakes on the next request.",
        _sleep_minutes,
    ),
    Field(
        "github_repository_id",
        "",
        "Numeric id of github_repository (gh api repos/OWNER/REPO --jq .id), quoted.",
        _optional(_regex(GITHUB_ID, 'must be digits in quotes, e.g. "123456789"')),
    ),
    Field(
        "github_repository_owner_id",
        "",
        "Numeric id of its owner (gh api repos/OWNER/REPO --jq .owner.id), quoted.",
        _optional(_regex(GITHUB_ID, 'must be digits in quotes, e.g. "123456789"')),
    ),
)
BY_NAME = {f.name: f for f in FIELDS}


@dataclass
class Settings:
    values: dict[str, Any]
    path: Path | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

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
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _connection_budget(values: Mapping[str, Any]) -> str | None:
    """The server's own pool sizing decides; a setting it would refuse is refused here first."""
    cap = limits.max_connections(values["db_tier"])
    instances, workers = values["max_instances"], values["server_workers"]
    reserved, tier = values["db_reserved_connections"], values["db_tier"]
    try:
        size_pool(cap, reserved, instances, workers)
    except SettingsError:
        needed = instances * (workers + 1) * 2 * 2
        return (
            f"{instances} instances x ({workers} workers + 1) x 2 pools x 2 connections = "
            f"{needed} exceeds {tier}'s {cap} connections minus {reserved} reserved: "
            "lower max_instances or server_workers, or pick a larger db_tier"
        )
    return None


def _cross_checks(values: Mapping[str, Any], bad: set[str]) -> list[tuple[str, str]]:
    """Checks across fields, skipped where a field they use is itself malformed."""
    problems: list[tuple[str, str]] = []
    budget = {"db_tier", "max_instances", "server_workers", "db_reserved_connections"}
    if not budget & bad:
        message = _connection_budget(values)
        if message:
            problems.append(("max_instances", message))
    if not {"min_instances", "max_instances"} & bad and (
        values["min_instances"] > values["max_instances"]
    ):
        problems.append(("min_instances", "must not exceed max_instances"))
    if not {"cpu", "memory"} & bad:
        message = limits.cpu_memory_problem(values["cpu"], values["memory"])
        if message:
            problems.append(("memory", message))
    if (
        values.get("vpc_egress") == "direct"
        and values.get("network_name")
        and not values.get("subnetwork_name")
    ):
        problems.append(
            ("subnetwork_name", "direct egress into an existing network needs its subnetwork_name")
        )
    return problems + _github_checks(values, bad)


def _github_checks(values: Mapping[str, Any], bad: set[str]) -> list[tuple[str, str]]:
    """terraform/variables.tf's pairing rules: the repository with its id, the id with its
    owner's id (federation binds to the ids, which survive a rename)."""
    fields = {"github_repository", "github_repository_id", "github_repository_owner_id"}
    if fields & bad:
        return []
    lookup = "gh api repos/OWNER/REPO --jq '.id, .owner.id'"
    if (values.get("github_repository", "") == "") != (
        values.get("github_repository_id", "") == ""
    ):
        return [
            (
                "github_repository_id",
                f"github_repository needs github_repository_id and github_repository_owner_id "
                f"({lookup}), and they need it",
            )
        ]
    if (values.get("github_repository_id", "") == "") != (
        values.get("github_repository_owner_id", "") == ""
    ):
        return [
            (
                "github_repository_owner_id",
                "github_repository_id and github_repository_owner_id go together: set both or "
                "neither",
            )
        ]
    return []


def outside_organisation_warning(members: list[str], domain: str | None = None) -> str | None:
    """IAP with its Google-managed OAuth client admits only the project's organisation.

    Offline we know only that consumer accounts (gmail.com) are in no organisation; `deployer
    check` passes the organisation's domain and every member outside it is named.
    """
    outside = []
    for member in members:
        kind, _, email = member.partition(":")
        if kind == "serviceAccount":
            continue  # service accounts sign their own tokens; IAP admits them
        member_domain = email.rpartition("@")[2] if kind != "domain" else email
        if member_domain in CONSUMER_DOMAINS or (domain and member_domain != domain):
            outside.append(member)
    if not outside:
        return None
    where = f"the project's organisation ({domain})" if domain else "the project's organisation"
    return (
        f"{', '.join(outside)}: IAP's Google-managed OAuth client admits only members of "
        f"{where}, so these will be refused; to admit them, give IAP a custom OAuth client "
        "(google_iap_settings, access_settings.oauth_settings; see README, 'Members outside "
        "your organisation')"
    )


def _unknown_key(key: str) -> str:
    guess = limits.closest(key, list(BY_NAME))
    return "unknown setting" + (f" (did you mean {guess}?)" if guess else "")


def _syntax_problem(error: Exception) -> Problem:
    if isinstance(error, RecursionError):
        return Problem(None, "syntax", "nested too deeply to read: flatten it (see vars.example)")
    line = getattr(error, "lineno", None)
    m = re.search(r"at line (\d+)", str(error))
    return Problem(
        line or (int(m.group(1)) if m else None),
        "syntax",
        f"not valid TOML ({error}); see vars.example",
    )


def describe(value: Any, message: str) -> str:
    """A problem with a value, showing the value only when it is short and plain."""
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > 80:
        return message
    return f"{value!r} {message}"


def _field_values(
    raw: Mapping[str, Any], text: str, environment_hint: str | None
) -> tuple[dict[str, Any], list[Problem]]:
    values: dict[str, Any] = {}
    problems: list[Problem] = []
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
            problems.append(Problem(_line_of(text, f.name), f.name, describe(value, message)))
        values[f.name] = value
    return values, problems


def parse(text: str, path: Path | None = None, environment_hint: str | None = None) -> Settings:
    """Parse and check; every problem is collected in `Settings.problems`."""
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        return Settings({}, path, [_syntax_problem(e)])
    problems = [Problem(_line_of(text, k), k, _unknown_key(k)) for k in raw if k not in BY_NAME]
    values, field_problems = _field_values(raw, text, environment_hint)
    problems += field_problems
    bad = {p.key for p in problems} | {f.name for f in FIELDS if f.name not in values}
    for key, message in _cross_checks(values, bad):
        problems.append(Problem(_line_of(text, key), key, message))
    warnings = []
    if "web_app_users" not in bad:
        warning = outside_organisation_warning(values["web_app_users"])
        if warning:
            warnings.append(Problem(_line_of(text, "web_app_users"), "web_app_users", warning))
    return Settings(values, path, problems, warnings)


def environment_from_path(path: Path) -> str | None:
    """vars.staging -> staging; vars / vars.toml -> None (the file or default decides)."""
    suffix = path.name.split(".", 1)[1] if "." in path.name else ""
    if suffix and suffix not in ("toml", "example") and re.fullmatch(r"[a-z][a-z0-9-]*", suffix):
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
        return json.dumps(value)  # a TOML basic string: quotes, backslashes, control characters
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise VarsError(f"cannot write {type(value).__name__} values to a vars file")


def render(values: Mapping[str, Any]) -> str:
    """A vars file with every setting, commented, in FIELDS order; unset ones commented out."""
    lines = [
        "# MLflow on GCP: the settings of one environment (deployer init wrote this).",
        "# Check it with `deployer validate --vars FILE`; see vars.example for every option.",
        "",
    ]
    for f in FIELDS:
        value = values.get(f.name, f.default)
        lines.append(f"# {f.help}")
        if value is None:
            lines.append(f"# {f.name} = (required: fill it in)")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
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


# ----- `deployer init` ------------------------------------------------------------------------


def parse_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs as typed values; an unknown key is named, with a near miss."""
    given: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise VarsError(f"--set {pair!r}: use KEY=VALUE, e.g. --set region=europe-west1")
        if key not in BY_NAME:
            raise VarsError(f"--set {pair!r}: {key}: {_unknown_key(key)}")
        given[key] = coerce(key, raw)
    return given


def initial_values(path: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, the environment named by the file name, then the --set values."""
    values = {f.name: f.default for f in FIELDS}
    hint = environment_from_path(path)
    if hint:
        values["environment"] = hint
    values.update(given)
    return values


def shown_default(value: Any) -> str | None:
    """A value as a prompt's default: lists comma-separated, as they are typed."""
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def check_answer(name: str, raw: str) -> tuple[Any, str | None]:
    """A typed answer as its value, and the problem with it (None when it is fine)."""
    value = coerce(name, raw)
    message = BY_NAME[name].check(value)
    return value, (describe(raw.strip(), message) if message else None)


EXAMPLES = {
    "project_id": "my-project-id",
    "state_bucket": "my-project-id-tfstate",
    "web_app_users": "user:you@example.com,group:team@example.com",
}


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise VarsError(
            f"{path} exists: edit it, pass --force to overwrite, or --vars for another environment"
        )


def require_given(path: Path, values: Mapping[str, Any]) -> None:
    """Required settings nobody gave: one line naming each and the --set that gives it."""
    missing = [f.name for f in FIELDS if f.required and values.get(f.name) is None]
    if missing:
        flags = " ".join(f"--set {n}={EXAMPLES.get(n, 'VALUE')}" for n in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise VarsError(f"{path} not written: {', '.join(missing)} {verb} required: pass {flags}")


def write_new(path: Path, values: Mapping[str, Any], force: bool = False) -> Settings:
    """Write a vars file only when it is complete and valid; otherwise write nothing."""
    refuse_overwrite(path, force)
    require_given(path, values)
    text = render(values)
    settings = parse(text, path, environment_from_path(path))
    if not settings.problems:
        path.write_text(text, encoding="utf-8")
    return settings
