"""The identity rules' small parts: who is an admin, where artifacts may go, what MLflow sees
on `flask.g`, and the vars setting that names the admins (the served behaviour is proven in
test_server_cloud.py)."""

from __future__ import annotations

import pytest
from flask import Flask, g

from deployer import vars as vars_file
from deployer.server import identity
from deployer.server.iap_app import member_for
from deployer.server.settings import SettingsError, load_settings

BASE = {
    "BACKEND_STORE_URI": "sqlite:////tmp/x.db",
    "ARTIFACTS_DESTINATION": "gs://acme-mlflow/artifacts",
    "AUTH_MODE": "none",
}


def test_admin_emails_are_bare_comma_separated_and_case_insensitive():
    settings = load_settings(
        {**BASE, "ADMIN_EMAILS": " Alice@Example.com, ci@p.iam.gserviceaccount.com "}
    )
    assert settings.admin_emails == {"alice@example.com", "ci@p.iam.gserviceaccount.com"}
    assert member_for("alice@example.com", settings.admin_emails).admin
    assert not member_for("bob@example.com", settings.admin_emails).admin
    assert load_settings(BASE).admin_emails == frozenset()  # nobody: the deployer fills it
    with pytest.raises(SettingsError, match="ADMIN_EMAILS entry 'user:alice@"):
        load_settings({**BASE, "ADMIN_EMAILS": "user:alice@example.com"})


def test_without_a_verified_admin_destructive_calls_are_refused():
    for member in (None, identity.Member("bob@example.com")):
        with identity.acting_as(member), pytest.raises(Exception, match="admins") as e:
            identity.require_admin("deleting an experiment")
        assert e.value.get_http_status_code() == 403
    with identity.acting_as(identity.Member("root@example.com", admin=True)):
        identity.require_admin("deleting an experiment")


@pytest.mark.parametrize(
    ("location", "allowed"),
    [
        ("gs://acme-mlflow/artifacts", True),
        ("gs://acme-mlflow/artifacts/team-a", True),
        ("mlflow-artifacts:/team-a", True),
        ("gs://acme-mlflow/artifactsX", False),
        ("gs://acme-mlflow/artifacts/../secrets", False),
        ("gs://acme-mlflow/other", False),
        ("gs://evil-bucket/artifacts", False),
        ("mlflow-artifacts://elsewhere/x", False),
        ("file:///etc", False),
        ("/tmp/x", False),
    ],
)
def test_artifact_locations_stay_under_the_roots(location, allowed):
    roots = (identity.PROXIED_ARTIFACT_ROOT, "gs://acme-mlflow/artifacts")
    assert identity.artifact_location_allowed(location, roots) is allowed


def test_mlflow_sees_the_member_where_its_auth_app_would_put_it():
    app = Flask(__name__)
    with app.test_request_context("/api/2.0/mlflow/runs/create", method="POST"):
        with identity.acting_as(identity.Member("alice@example.com")):
            identity._before_request()
        from flask import request

        assert g.mlflow_authenticated_user == "alice@example.com"
        assert request.max_content_length == identity.MAX_API_BODY_BYTES
    with app.test_request_context("/api/2.0/mlflow-artifacts/artifacts/x", method="PUT"):
        identity._before_request()
        assert getattr(g, "mlflow_authenticated_user", None) is None


def test_web_app_admins_default_to_the_deploying_owner():
    text = (
        'project_id = "acme-ml"\nstate_bucket = "acme-ml-tfstate"\n'
        'web_app_users = ["group:ml@example.com"]\n'
    )
    settings = vars_file.parse(text)
    assert settings.problems == []
    assert settings.tfvars("img", owner="owner@example.com")["web_app_admins"] == [
        "user:owner@example.com"
    ]
    assert settings.tfvars("img", owner="ci@p.iam.gserviceaccount.com")["web_app_admins"] == [
        "serviceAccount:ci@p.iam.gserviceaccount.com"
    ]
    named = vars_file.parse(text + 'web_app_admins = ["user:alice@example.com"]\n')
    assert named.tfvars("img", owner="owner@example.com")["web_app_admins"] == [
        "user:alice@example.com"
    ]
    bad = vars_file.parse(text + 'web_app_admins = ["alice@example.com"]\n')
    assert [p for p in bad.problems if "web_app_admins" in str(p)], bad.problems
