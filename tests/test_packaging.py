"""What each audience installs: researchers get a small client, the image only the server.

The fast tests run the client commands with the server stack made unimportable, which proves
the CLI imports it lazily. The slow one (make test-long; needs PyPI) installs `.[client]` into a
fresh virtual environment and measures it: the README quotes the figure it prints.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# Modules only the server (or the owner's tools) need; the client must run without any of them.
SERVER_ONLY = ("sqlalchemy", "alembic", "gunicorn", "psycopg2", "pymysql", "flask", "google.cloud")
CLIENT_SITE_PACKAGES_LIMIT_MB = 200

# Both ways of asking say "not installed": an import, and importlib.util.find_spec (which
# mlflow uses to decide whether SQLAlchemy is there).
BLOCKER = """
import importlib.abc, importlib.util, sys
BLOCKED = {blocked!r}

def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if blocked(name) else real_find_spec(name, *a)
sys.meta_path.insert(0, Block())
sys.argv = ["deployer", *sys.argv[1:]]
from deployer.cli import main
main()
"""


def _client_only(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=SERVER_ONLY)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_client_commands_run_without_the_server_stack(tmp_path):
    url, sa = (
        "https://mlflow-1.europe-west1.run.app",
        "mlflow-log-pusher@acme-ml.iam.gserviceaccount.com",
    )
    env = _client_only("env", "--url", url, "--service-account", sa, cwd=tmp_path)
    assert env.returncode == 0, env.stderr
    assert f"export MLFLOW_TRACKING_URI={url}" in env.stdout
    assert "export MLFLOW_TRACKING_AUTH=deployer-iap" in env.stdout
    token = _client_only("token", "--help", cwd=tmp_path)
    assert token.returncode == 0 and "Print a token IAP accepts" in token.stdout, token.stderr
    # Without the server stack, the owner's and server commands say what to install, in a line.
    (tmp_path / "vars").write_text('project_id = "acme-ml"\n')
    validate = _client_only("validate", cwd=tmp_path)
    assert validate.returncode == 1
    lines = validate.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install '.[server]'" in lines[0], validate.stderr


def test_declared_dependencies_are_the_imported_ones():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = " ".join(project["dependencies"] + project["optional-dependencies"]["server"])
    for name in ("sqlalchemy", "alembic"):
        assert name in declared, f"{name} is imported by deployer/server but not declared"
    everything = declared + " ".join(project["optional-dependencies"]["client"])
    for never_imported in ("python-terraform", "google-cloud-secret-manager"):
        assert never_imported not in everything
    constraints = (REPO / "constraints.txt").read_text().lower()
    assert "python-terraform" not in constraints and "secret-manager" not in constraints
    # The image installs the server extra only.
    assert '"$stage[server]"' in (REPO / "image" / "install.sh").read_text()


def _deployer_imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "deployer":  # `from deployer import jose` names a module
                names.update(f"deployer.{a.name}" for a in node.names)
    return {n for n in names if n == "deployer" or n.startswith("deployer.")}


def server_package_strays() -> list[str]:
    """Imports in deployer/server of deployer modules outside it (none may exist: the image
    ships deployer/server alone)."""
    strays = []
    for path in sorted((REPO / "deployer" / "server").rglob("*.py")):
        for name in sorted(_deployer_imports(path.read_text())):
            if name not in ("deployer", "deployer.server") and not name.startswith(
                "deployer.server."
            ):
                strays.append(f"{path.relative_to(REPO)}: {name}")
    return strays


def test_the_server_package_imports_only_itself():
    assert server_package_strays() == []


def test_the_import_check_sees_a_stray():
    """The check above, shown catching both spellings of a CLI-side import."""
    assert _deployer_imports("from deployer import jose\nimport deployer.limits\n") == {
        "deployer",
        "deployer.jose",
        "deployer.limits",
    }
    assert _deployer_imports("from deployer.server import iap\nfrom . import x\n") == {
        "deployer.server"
    }


def _site_packages_mb(venv: Path) -> float:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 2**20


@pytest.mark.slow
def test_the_researchers_install_is_small_and_works(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "-c", str(REPO / "constraints.txt"), f"{REPO}[client]"],
        check=True,
        timeout=900,
    )
    size = _site_packages_mb(venv)
    print(f"client install: site-packages {size:.0f} MB")
    assert size < CLIENT_SITE_PACKAGES_LIMIT_MB
    python = str(venv / "bin" / "python")
    for module in SERVER_ONLY:
        found = subprocess.run(
            [python, "-c", f"import importlib.util as u; print(u.find_spec({module!r}))"],
            capture_output=True,
            text=True,
        )
        assert found.stdout.strip() in ("None", ""), f"{module} was installed for the client"
    plugin = subprocess.run(
        [
            python,
            "-c",
            "from importlib.metadata import entry_points;"
            "print(entry_points(group='mlflow.request_auth_provider')['deployer-iap'].load())",
        ],
        capture_output=True,
        text=True,
    )
    assert "IapAuthProvider" in plugin.stdout, plugin.stderr
    token = subprocess.run(
        [str(venv / "bin" / "deployer"), "token", "--help"], capture_output=True, text=True
    )
    assert token.returncode == 0, token.stderr
