"""Client access: `deployer token` from every credential source, and the MLflow plugin that
keeps long runs authenticated, against local fakes of Google's endpoints and an IAP stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import requests
import yaml
from mlflow import MlflowClient

from deployer import mlflow_auth, tokens, user_login
from deployer.server import jose
from tests.conftest import REPO, console_script
from tests.support import jws
from tests.support.cloud_server import migrate_and_serve, running_stack
from tests.support.google_endpoints.sitecustomize import point_google_auth_at
from tests.support.google_fakes import WIF_AUDIENCE, GoogleFakes
from tests.support.iap_proxy import IapProxy
from tests.support.processes import free_port, wait_healthy
from tests.support.sign_in import sign_in_from_the_command_line

PROJECT = "test-project"
CLIENT_SA = f"mlflow-log-pusher@{PROJECT}.iam.gserviceaccount.com"
CI_SA = f"ci-runner@{PROJECT}.iam.gserviceaccount.com"
ALICE = "alice@example.com"
MALLORY = "mallory@elsewhere.org"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    fakes = GoogleFakes(PROJECT)
    fakes.service_account(CLIENT_SA)
    fakes.service_account(CI_SA)
    # What Terraform grants: web_app_users and the CI identity may sign as the client SA.
    fakes.allow_token_creator(ALICE, CLIENT_SA)
    fakes.allow_token_creator(CI_SA, CLIENT_SA)
    with running_stack(root) as (cloud, keys):
        proxy = IapProxy(
            "http://unset", keys, fakes, members=[f"serviceAccount:{CLIENT_SA}", f"user:{ALICE}"]
        )
        port = free_port()
        env = cloud.env(port, ALLOWED_HOSTS=f"127.0.0.1:{proxy.server.port}")
        server = migrate_and_serve(env, root / "serve.log")
        proxy.upstream = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proxy.upstream, server)
            yield fakes, proxy, root
        finally:
            server.stop()
            proxy.close()
            fakes.close()


def deployer_token(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("deployer"), "token", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_adc_impersonates_the_client_account(world):
    fakes, proxy, root = world
    adc = fakes.user_adc_file(ALICE, root / "alice.json")
    env = fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(adc))
    before = fakes.counters.sign_jwt
    result = deployer_token(env, "--audience", proxy.url, "--impersonate", CLIENT_SA)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert proxy.identify(token) == CLIENT_SA
    assert fakes.counters.sign_jwt == before + 1
    assert token not in result.stderr and "your application-default credentials" in result.stderr
    r = requests.get(
        f"{proxy.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200


def test_client_accounts_own_key_file_signs_locally(world):
    fakes, proxy, root = world
    key = fakes.key_file(CLIENT_SA, root / "client-key.json")
    before = fakes.counters.sign_jwt
    result = deployer_token(
        fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(key)),
        "--audience",
        proxy.url,
        "--format",
        "header",
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.strip()
    assert header.startswith("Authorization: Bearer ")
    assert proxy.identify(header.removeprefix("Authorization: Bearer ")) == CLIENT_SA
    assert fakes.counters.sign_jwt == before  # no IAM call needed


def test_other_key_file_signs_through_iam(world):
    fakes, proxy, root = world
    key = fakes.key_file(CI_SA, root / "ci-key.json")
    result = deployer_token(
        fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(key)),
        "--audience",
        proxy.url,
        "--impersonate",
        CLIENT_SA,
        "--format",
        "env",
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("export MLFLOW_TRACKING_TOKEN=")
    assert proxy.identify(line.split("=", 1)[1]) == CLIENT_SA


def test_impersonated_adc_signs_as_its_target(world):
    fakes, proxy, root = world
    adc = fakes.impersonated_adc_file(ALICE, CLIENT_SA, root / "impersonated.json")
    result = deployer_token(
        fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(adc)), "--audience", proxy.url
    )
    assert result.returncode == 0, result.stderr
    assert proxy.identify(result.stdout.strip()) == CLIENT_SA


def test_metadata_server_in_ci(world):
    fakes, proxy, root = world
    fakes.metadata_account = CI_SA
    try:
        env = fakes.client_env(root, **fakes.metadata_env())
        env["MLFLOW_TRACKING_URI"] = proxy.url
        env[mlflow_auth.ENV_SERVICE_ACCOUNT] = CLIENT_SA
        result = deployer_token(env)
    finally:
        fakes.metadata_account = None
    assert result.returncode == 0, result.stderr
    assert proxy.identify(result.stdout.strip()) == CLIENT_SA


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("no credentials", ["no Google credentials", "gcloud auth application-default login"]),
        (
            "not a token creator",
            ["roles/iam.serviceAccountTokenCreator", CLIENT_SA, "web_app_users"],
        ),
        ("user without --impersonate", ["--impersonate", "MLFLOW_IAP_SERVICE_ACCOUNT"]),
        ("revoked login", ["gcloud auth application-default login"]),
        ("no server", ["--audience", "MLFLOW_TRACKING_URI"]),
    ],
)
def test_every_failure_is_one_line_with_its_fix(world, case, needles):
    fakes, proxy, root = world
    args = ["--audience", proxy.url, "--impersonate", CLIENT_SA]
    env = fakes.client_env(root)
    if case == "not a token creator":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(
            fakes.user_adc_file(MALLORY, root / "mallory.json")
        )
    elif case == "user without --impersonate":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(fakes.user_adc_file(ALICE, root / "a2.json"))
        args = ["--audience", proxy.url]
    elif case == "revoked login":
        adc = fakes.user_adc_file(ALICE, root / "revoked.json")
        fakes.refresh_tokens.clear()
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(adc)
    elif case == "no server":
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(fakes.user_adc_file(ALICE, root / "a3.json"))
        args = []
    result = deployer_token(env, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def plugin_env(world, monkeypatch):
    """This process as a researcher: user ADC, the plugin on, tracking URI = the service."""
    fakes, proxy, root = world
    adc = fakes.user_adc_file(ALICE, root / f"alice-{time.time_ns()}.json")
    for k, v in fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(adc)).items():
        if k.startswith(("GOOGLE_", "CLOUDSDK_", "IAM_")):
            monkeypatch.setenv(k, v)
    point_google_auth_at(fakes.url, monkeypatch.setattr)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", mlflow_auth.AUTH_NAME)
    monkeypatch.setenv(mlflow_auth.ENV_SERVICE_ACCOUNT, CLIENT_SA)
    monkeypatch.setenv("MLFLOW_DEPLOYER_CONFIG_DIR", str(root / "no-login"))
    mlflow_auth._caches.clear()
    mlflow.set_tracking_uri(proxy.url)
    yield fakes, proxy
    mlflow.set_tracking_uri(None)
    mlflow_auth._caches.clear()


def test_long_run_with_short_tokens_never_sees_a_401(plugin_env, monkeypatch):
    _, proxy = plugin_env
    monkeypatch.setenv(mlflow_auth.ENV_LIFETIME, "5")
    denied_before = sum(v for k, v in proxy.outcomes.items() if not k.startswith("forwarded"))
    client = MlflowClient()
    run = client.create_run(client.create_experiment(f"long-{time.time_ns()}"))
    deadline = time.monotonic() + 20
    step = 0
    while time.monotonic() < deadline:
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
        step += 1
        time.sleep(0.05)
    denied = sum(v for k, v in proxy.outcomes.items() if not k.startswith("forwarded"))
    assert denied == denied_before, proxy.outcomes
    assert len(client.get_metric_history(run.info.run_id, "loss")) == step
    cache = mlflow_auth.cache_for()
    assert cache.minter.lifetime == 5
    assert 4 <= cache.mints <= 12, cache.mints  # one per ~3.75 s of a 5 s token


def test_sixteen_threads_share_one_mint(plugin_env):
    fakes, _ = plugin_env
    client = MlflowClient()
    run = client.create_run(client.create_experiment(f"threads-{time.time_ns()}"))
    before = fakes.counters.sign_jwt
    mlflow_auth._caches.clear()
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(5):
                client.log_metric(run.info.run_id, f"m{i}", float(j), step=j)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fakes.counters.sign_jwt - before == 1
    assert mlflow_auth.cache_for().mints == 1


def test_a_refused_token_is_reminted_once(plugin_env):
    _, proxy = plugin_env
    cache = mlflow_auth.cache_for()
    # A token the server will refuse although it looks fresh (say, a revoked key).
    cache._token = tokens.MintedToken("not.a.token", time.time() + 3000, CLIENT_SA, "test")
    before = proxy.outcomes.copy()
    MlflowClient().search_experiments(max_results=1)
    new = {k: v - before.get(k, 0) for k, v in proxy.outcomes.items() if v != before.get(k, 0)}
    assert sum(v for k, v in new.items() if k.startswith("invalid token")) == 1
    assert new.get("forwarded 200") == 1
    assert cache._token.token != "not.a.token"


def test_track_experiment_example_runs_unchanged_through_iap(world):
    fakes, proxy, root = world
    adc = fakes.user_adc_file(ALICE, root / "example.json")
    env = fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(adc))
    env.update(
        {
            "MLFLOW_TRACKING_URI": proxy.url,
            "MLFLOW_TRACKING_AUTH": mlflow_auth.AUTH_NAME,
            mlflow_auth.ENV_SERVICE_ACCOUNT: CLIENT_SA,
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "track_experiment.py"),
            "--epochs",
            "3",
            "--model",
            "iap-model",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = subprocess.run(
        [sys.executable, str(REPO / "examples" / "load_model.py"), "--model", "iap-model"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "prediction" in loaded.stdout
    assert proxy.identities[CLIENT_SA] > 0


def test_env_prints_the_lines_to_paste(world, tmp_path):
    result = subprocess.run(
        [
            console_script("deployer"),
            "env",
            "--url",
            "https://mlflow-abc-uc.a.run.app/",
            "--service-account",
            CLIENT_SA,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "export MLFLOW_TRACKING_URI=https://mlflow-abc-uc.a.run.app",
        "export MLFLOW_TRACKING_AUTH=deployer-iap",
        f"export MLFLOW_IAP_SERVICE_ACCOUNT={CLIENT_SA}",
        "export MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=16777216",
    ]
    missing = subprocess.run(
        [console_script("deployer"), "env", "--local", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0 and "run `deployer local` first" in missing.stderr


def deployer_env_in(folder) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("deployer"), "env", "--env", "dev"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_env_names_the_allowlisted_desktop_client_and_says_to_sign_in(tmp_path):
    """A deployment that allowlists a desktop OAuth client: `deployer env` exports its ID, so a
    `deployer login` for it is used (one for another deployment's client is not)."""
    outputs = {
        "service_url": "https://mlflow-abc-uc.a.run.app",
        "client_service_account": CLIENT_SA,
        "iap_programmatic_clients": [DESKTOP_CLIENT],
    }
    (tmp_path / ".deployer" / "dev").mkdir(parents=True)
    (tmp_path / ".deployer" / "dev" / "outputs.json").write_text(json.dumps(outputs))
    result = deployer_env_in(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"export MLFLOW_IAP_OAUTH_CLIENT_ID={DESKTOP_CLIENT}"
    assert "`deployer login`" in result.stderr
    outputs["iap_programmatic_clients"] = []
    (tmp_path / ".deployer" / "dev" / "outputs.json").write_text(json.dumps(outputs))
    result = deployer_env_in(tmp_path)
    assert "OAUTH_CLIENT_ID" not in result.stdout and "deployer login" not in result.stderr


def test_tokens_are_rejected_by_the_stand_in_when_forged(world):
    fakes, proxy, root = world
    key = fakes.key_file(CLIENT_SA, root / "forge.json")
    result = deployer_token(
        fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(key)), "--audience", proxy.url
    )
    good = result.stdout.strip()
    h, _, s = good.split(".")
    claims = jws.parse(good).claims
    claims["sub"] = claims["iss"] = CI_SA  # claim to be someone else, keep the signature
    forged = ".".join([h, jws.b64url_encode(json.dumps(claims).encode()), s])
    with pytest.raises(jose.TokenError):
        proxy.identify(forged)


def test_github_actions_workload_identity_federation(world):
    """CI with no key file: GitHub's OIDC token -> STS -> signJwt as the client account."""
    fakes, proxy, root = world
    repo = "acme/ml-models"
    fakes.allow_token_creator(fakes.wif_principal(repo), CLIENT_SA)  # Terraform's binding
    oidc = root / "github-oidc.jwt"
    oidc.write_text(fakes.github_oidc_token(repo, WIF_AUDIENCE))
    creds = fakes.external_account_file(oidc, root / "wif.json")
    env = fakes.client_env(root, GOOGLE_APPLICATION_CREDENTIALS=str(creds))
    env.update({"MLFLOW_TRACKING_URI": proxy.url, mlflow_auth.ENV_SERVICE_ACCOUNT: CLIENT_SA})
    result = deployer_token(env)
    assert result.returncode == 0, result.stderr
    assert proxy.identify(result.stdout.strip()) == CLIENT_SA

    other = root / "other-oidc.jwt"
    other.write_text(fakes.github_oidc_token("someone/else", WIF_AUDIENCE))
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(
        fakes.external_account_file(other, root / "wif-other.json")
    )
    refused = deployer_token(env)
    assert refused.returncode != 0 and "roles/iam.serviceAccountTokenCreator" in refused.stderr


def test_ci_workflow_example_uses_federation_and_the_champion_alias():
    workflow = yaml.safe_load(
        (REPO / "examples" / "github-actions" / "load-champion.yml").read_text()
    )
    assert workflow["permissions"]["id-token"] == "write"
    job = workflow["jobs"]["predict"]
    assert job["env"]["MLFLOW_TRACKING_AUTH"] == mlflow_auth.AUTH_NAME
    auth = next(
        s for s in job["steps"] if s.get("uses", "").startswith("google-github-actions/auth@")
    )
    assert "workload_identity_provider" in auth["with"]
    assert "credentials_json" not in auth["with"]  # no key files
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "examples/load_model.py" in runs and "--alias champion" in runs


# ----- each person's own identity: `deployer login`, then the plugin mints their ID token -----
DESKTOP_CLIENT = "1234-desktop.apps.googleusercontent.com"
BOB = "bob@example.com"


def _sign_in_from_the_command_line(fakes, root, config_dir, email):
    env = fakes.client_env(
        root,
        MLFLOW_DEPLOYER_CONFIG_DIR=str(config_dir),
        MLFLOW_IAP_OAUTH_CLIENT_ID=DESKTOP_CLIENT,
        MLFLOW_IAP_OAUTH_CLIENT_SECRET=fakes.oauth_client(DESKTOP_CLIENT),
    )
    return sign_in_from_the_command_line(fakes, console_script("deployer"), env, email)


def test_deployer_login_keeps_a_private_refresh_token(world, tmp_path):
    fakes, _, root = world
    config = tmp_path / "alice-config"
    out = _sign_in_from_the_command_line(fakes, root, config, ALICE)
    assert f"signed in as {ALICE}" in out
    stored = config / "login.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert config.stat().st_mode & 0o777 == 0o700
    doc = json.loads(stored.read_text())
    assert doc["email"] == ALICE and doc["refresh_token"] in fakes.openid_refresh_tokens
    assert doc["refresh_token"] not in out

    stored.chmod(0o644)
    with pytest.raises(tokens.TokenError, match="chmod 600"):
        user_login.load(stored)


@pytest.fixture
def personal(world, plugin_env, tmp_path, monkeypatch):
    """IAP allowlists the desktop client; Alice and Bob each sign in on their own machine."""
    fakes, proxy, root = world
    proxy.programmatic_clients.add(DESKTOP_CLIENT)
    proxy.members.add(f"user:{BOB}")
    dirs = {}
    for email in (ALICE, BOB):
        dirs[email] = tmp_path / email
        _sign_in_from_the_command_line(fakes, root, dirs[email], email)
    yield fakes, proxy, dirs, monkeypatch
    proxy.programmatic_clients.discard(DESKTOP_CLIENT)
    proxy.members.discard(f"user:{BOB}")


def test_two_people_logging_from_code_each_see_their_own_email(personal):
    _, _, dirs, monkeypatch = personal
    authors = {}
    for person in (ALICE, BOB, None):  # None: not signed in -> the shared client account
        monkeypatch.setenv("MLFLOW_DEPLOYER_CONFIG_DIR", str(dirs.get(person, "/nonexistent")))
        mlflow_auth._caches.clear()
        with mlflow.start_run(experiment_id="0") as run:
            mlflow.log_param("who", str(person))
        got = MlflowClient().get_run(run.info.run_id)
        authors[person] = (got.info.user_id, got.data.tags["mlflow.user"])
    assert authors == {ALICE: (ALICE, ALICE), BOB: (BOB, BOB), None: (CLIENT_SA, CLIENT_SA)}


def test_personal_tokens_are_refreshed_and_a_revoked_sign_in_says_what_to_do(personal):
    fakes, proxy, dirs, monkeypatch = personal
    monkeypatch.setenv("MLFLOW_DEPLOYER_CONFIG_DIR", str(dirs[ALICE]))
    mlflow_auth._caches.clear()
    cache = mlflow_auth.cache_for()
    first = cache.get()
    assert jws.parse(first).claims["aud"] == DESKTOP_CLIENT
    cache._token = tokens.MintedToken(first, time.time() + 10, ALICE, "test")  # about to expire
    before = fakes.counters.id_tokens
    assert proxy.identify(cache.get()) == ALICE
    assert cache.mints == 2 and fakes.counters.id_tokens == before + 1
    fakes.revoke(user_login.load(dirs[ALICE] / "login.json").refresh_token)
    cache._token = None
    with pytest.raises(tokens.TokenError, match="run `deployer login` again"):
        cache.get()
    # Asked for the shared account explicitly, the same person still gets through.
    monkeypatch.setenv(mlflow_auth.ENV_IDENTITY, "service-account")
    assert mlflow_auth.cache_for().minter.service_account == CLIENT_SA


def test_deployer_token_follows_the_plugins_identity_rule(personal):
    """`deployer token` (client_env.mint_token) mints as the plugin would: the signed-in
    person's own ID token, the shared account when asked for it, one clear error when
    `personal` is asked for without a login."""
    from deployer import client_env

    _, proxy, dirs, _ = personal
    env = dict(os.environ, MLFLOW_DEPLOYER_CONFIG_DIR=str(dirs[BOB]))
    minted, aud = client_env.mint_token(env, 600)
    assert (minted.service_account, aud) == (BOB, DESKTOP_CLIENT)
    assert proxy.identify(minted.token) == BOB

    shared, _ = client_env.mint_token({**env, mlflow_auth.ENV_IDENTITY: "service-account"}, 600)
    assert shared.service_account == CLIENT_SA and proxy.identify(shared.token) == CLIENT_SA

    other_client = {**env, "MLFLOW_IAP_OAUTH_CLIENT_ID": "another-deployment-client"}
    assert client_env.mint_token(other_client, 600)[0].service_account == CLIENT_SA
    nobody = {
        **env,
        "MLFLOW_DEPLOYER_CONFIG_DIR": "/nonexistent",
        "MLFLOW_IAP_IDENTITY": "personal",
    }
    with pytest.raises(tokens.TokenError, match="run `deployer login`"):
        client_env.mint_token(nobody, 600)


def test_without_the_allowlist_iap_refuses_a_personal_token(personal):
    _, proxy, dirs, _ = personal
    proxy.programmatic_clients.discard(DESKTOP_CLIENT)
    token = user_login.PersonalTokenMinter(user_login.load(dirs[BOB] / "login.json")).mint()
    with pytest.raises(jose.TokenError, match="audience"):
        proxy.identify(token.token)


def test_token_for_a_named_environment_uses_its_own_account_over_the_shell(tmp_path):
    """`deployer token --env staging` in a shell set up for dev mints as staging's client
    account for staging's audience (dev's account is no member of staging)."""
    import json

    from deployer import client_env

    for name in ("dev", "staging"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "outputs.json").write_text(
            json.dumps(
                {
                    "client_audience": f"https://mlflow-{name}-1.us-central1.run.app/*",
                    "client_service_account": f"mlflow-{name}-log-pusher@p.iam.gserviceaccount.com",
                }
            )
        )
    shell = {
        "MLFLOW_TRACKING_URI": "https://mlflow-dev-1.us-central1.run.app",
        "MLFLOW_IAP_SERVICE_ACCOUNT": "mlflow-dev-log-pusher@p.iam.gserviceaccount.com",
    }
    env = client_env.token_environment(shell, environment="staging", root=tmp_path)
    assert env["MLFLOW_IAP_AUDIENCE"] == "https://mlflow-staging-1.us-central1.run.app/*"
    assert env["MLFLOW_IAP_SERVICE_ACCOUNT"].startswith("mlflow-staging-log-pusher@")
    plain = client_env.token_environment(shell, root=tmp_path)
    assert plain["MLFLOW_IAP_SERVICE_ACCOUNT"].startswith("mlflow-dev-log-pusher@")
