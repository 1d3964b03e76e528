"""Cloud SQL for PostgreSQL in the twin: each instance a real PostgreSQL whose unix socket is at
TWIN_DIR/cloudsql/PROJECT:REGION:INSTANCE, the folder Cloud Run mounts at /cloudsql.

Databases and users are real; users join `cloudsqlsuperuser` and databases belong to it, as
Cloud SQL sets them up (https://cloud.google.com/sql/docs/postgres/users#default-users), so the
MLflow user owns the tables it creates and cannot be dropped while it does.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg2
from psycopg2 import sql

from tests.support.postgres import Postgres, _chown_tree
from tests.twin.resources import Behaviour, CloudError, Context, register

# Default max_connections by the tier's memory
# (https://cloud.google.com/sql/docs/postgres/flags#postgres-m, "max_connections").
TIER_CONNECTIONS = {"db-f1-micro": 25, "db-g1-small": 50}
CUSTOM = re.compile(r"^db-custom-(\d+)-(\d+)$")


def max_connections(tier: str) -> int:
    if tier in TIER_CONNECTIONS:
        return TIER_CONNECTIONS[tier]
    m = CUSTOM.match(tier)
    memory_mb = int(m.group(2)) if m else 16384
    for limit_mb, connections in ((3840, 25 * 4), (6144, 100), (7680, 200), (15360, 400)):
        if memory_mb < limit_mb:
            return connections
    return 500 if memory_mb < 30720 else 600


class TwinPostgres(Postgres):
    """tests/support's PostgreSQL with its socket in the twin's shared /cloudsql folder."""

    def __init__(self, twin_dir: Path, connection_name: str, instance: str) -> None:
        root = twin_dir / "sql" / instance
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(connection_name=connection_name, root=root)
        self.socket_root = twin_dir / "cloudsql"
        self.socket_dir = self.socket_root / connection_name

    def init(self) -> TwinPostgres:
        self.socket_root.mkdir(exist_ok=True)
        self.socket_root.chmod(0o755)
        super().init()
        _chown_tree(self.socket_dir, self.user)
        self.socket_dir.chmod(0o755)
        return self

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def instance_pg(ctx: Context, name: str) -> TwinPostgres:
    conn = f"{ctx.project_id}:{ctx.region}:{name}"
    for s in ctx.doc()["resources"].get("google_sql_database_instance", {}).values():
        if s["name"] == name:
            conn = s["connection_name"]
    return TwinPostgres(ctx.twin.root, conn, name)


def _execute(
    pg: TwinPostgres, statement: sql.Composable, *params: object, db: str = "postgres"
) -> None:
    conn = pg.connect(dbname=db)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
    finally:
        conn.close()


def _settings(s: dict) -> dict:
    return (s.get("settings") or [{}])[0]


@register("google_sql_database_instance")
class Instance(Behaviour):
    force_new = ("project", "name", "region", "database_version")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = s["name"]
        s["connection_name"] = f"{s['project']}:{s['region']}:{s['name']}"
        s["self_link"] = (
            f"https://sqladmin.googleapis.com/sql/v1beta4/projects/{s['project']}/instances/{s['name']}"
        )
        s["private_ip_address"] = "10.20.0.3"
        s["service_account_email_address"] = (
            f"p{ctx.number}-twin@gcp-sa-cloud-sql.iam.gserviceaccount.com"
        )
        s["first_ip_address"] = s["private_ip_address"]

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        if s["name"] in ctx.doc()["deleted"].get(self.kind, []):
            raise CloudError(
                "Error, failed to create instance: googleapi: Error 409: The Cloud SQL instance "
                "already exists. When you delete an instance, you can't reuse the name of the "
                "deleted instance until one week from the deletion date., instanceAlreadyExists"
            )
        version = s.get("database_version") or ""
        if not version.startswith("POSTGRES"):
            raise CloudError(f"the twin runs PostgreSQL only, not {version} (MySQL is plan-only)")
        pg = TwinPostgres(ctx.twin.root, s["connection_name"], s["name"]).init()
        with open(pg.data / "postgresql.conf", "a") as conf:
            conf.write(f"max_connections = {max_connections(_settings(s).get('tier', ''))}\n")
        if _settings(s).get("activation_policy", "ALWAYS") != "NEVER":
            pg.start()
            _execute(pg, sql.SQL("CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEDB CREATEROLE"))

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        pg = TwinPostgres(ctx.twin.root, s["connection_name"], s["name"])
        want = _settings(s).get("activation_policy") or "ALWAYS"
        if want == "NEVER" and pg.running:
            pg.stop()
        elif want != "NEVER" and not pg.running:
            pg.start()

    def deleting(self, ctx: Context, s: dict) -> None:
        if s.get("deletion_protection"):
            # Terraform-side protection (google_sql_database_instance docs, deletion_protection).
            raise CloudError(
                "Error, failed to delete instance because deletion_protection is set to true. "
                "Set it to false to proceed with instance deletion"
            )
        if _settings(s).get("deletion_protection_enabled"):
            raise CloudError(
                f"Error, failed to delete instance {s['name']}: googleapi: Error 400: The "
                "instance is protected. Please disable the deletion protection and try again., "
                "invalid"
            )
        pg = TwinPostgres(ctx.twin.root, s["connection_name"], s["name"])
        if pg.running:
            pg.stop("immediate")
        shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(pg.socket_dir, ignore_errors=True)
        with ctx.twin.transaction() as doc:
            doc["deleted"].setdefault(self.kind, []).append(s["name"])

    def refresh(self, ctx: Context, s: dict) -> dict:
        # The activation policy may have been changed outside Terraform (a database that sleeps).
        live = ctx.doc().get("sql_activation", {}).get(s["name"])
        if live and s.get("settings"):
            s["settings"][0]["activation_policy"] = live
        return s


def _require_running(pg: TwinPostgres, instance: str) -> None:
    if not pg.running:
        raise CloudError(
            f"googleapi: Error 400: Invalid request: Invalid request since instance "
            f"{instance} is not running., invalid"
        )


@register("google_sql_database")
class Database(Behaviour):
    force_new = ("project", "instance", "name")
    id_format = "projects/{project}/instances/{instance}/databases/{name}"

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        pg = instance_pg(ctx, s["instance"])
        _require_running(pg, s["instance"])
        _execute(
            pg,
            sql.SQL("CREATE DATABASE {} OWNER cloudsqlsuperuser").format(sql.Identifier(s["name"])),
        )
        s["self_link"] = s["id"]

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        pass

    def deleting(self, ctx: Context, s: dict) -> None:
        if s.get("deletion_policy") == "ABANDON":
            return
        pg = instance_pg(ctx, s["instance"])
        if pg.running:
            _execute(
                pg,
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(s["name"])
                ),
            )


@register("google_sql_user")
class User(Behaviour):
    force_new = ("project", "instance", "name", "host")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = f"{s['name']}/{s.get('host') or ''}/{s['instance']}"

    def _password(self, s: dict, config: dict) -> str:
        return config.get("password_wo") or s.get("password") or ""

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        pg = instance_pg(ctx, s["instance"])
        _require_running(pg, s["instance"])
        _execute(
            pg,
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s IN ROLE cloudsqlsuperuser").format(
                sql.Identifier(s["name"])
            ),
            self._password(s, config),
        )

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        pg = instance_pg(ctx, s["instance"])
        _require_running(pg, s["instance"])
        _execute(
            pg,
            sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(s["name"])),
            self._password(s, config),
        )

    def deleting(self, ctx: Context, s: dict) -> None:
        if s.get("deletion_policy") == "ABANDON":
            return
        pg = instance_pg(ctx, s["instance"])
        if not pg.running:
            return
        try:
            _execute(pg, sql.SQL("DROP ROLE {}").format(sql.Identifier(s["name"])))
        except psycopg2.Error as e:
            raise CloudError(
                f"Error, failed to delete user {s['name']} in instance {s['instance']}: "
                f"googleapi: Error 400: Invalid request: failed to delete user {s['name']}: "
                f"{str(e).strip()}., invalid"
            ) from None


def set_activation(ctx: Context, instance: str, policy: str) -> None:
    """What `gcloud sql instances patch --activation-policy` and the Admin API do."""
    pg = instance_pg(ctx, instance)
    if policy == "NEVER" and pg.running:
        pg.stop()
    elif policy == "ALWAYS" and not pg.running:
        pg.start()
    with ctx.twin.transaction() as doc:
        doc.setdefault("sql_activation", {})[instance] = policy
