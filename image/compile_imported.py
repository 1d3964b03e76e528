"""Byte-compile exactly the modules the server loads, so that no cold start compiles them.

install.sh drops every byte-code cache and the image's user cannot write one, so without this
each Cloud Run cold start compiled MLflow and its stack from source, every time: importing the
app took 8.1 s from source against 3.5 s from byte code, measured on this install. Compiling
all of site-packages would add what the server never imports; this loads the app as the
entrypoint does and compiles what `sys.modules` then holds, together with the modules and
packages below that the first requests, the workers and the migration job import lazily
(tests/test_image.py lists any module a served route tour still compiles at run time).

By default the standard library modules the server loads are compiled too, for a base image
that ships them without byte code. The files are unchecked-hash .pyc (PEP 552): Python uses
them without comparing them with the source's modification time, which image layers and build
services need not preserve.

    /opt/venv/bin/python compile_imported.py [PREFIX ...]
        (the Dockerfile; PREFIX defaults to the venv and the base Python's own prefix)
"""

from __future__ import annotations

import compileall
import importlib
import importlib.util
import os
import py_compile
import sys
import tempfile
from pathlib import Path

# Imported only by a first request, by gunicorn's master reading its hooks, or by
# `mlflow-server-entrypoint migrate`, not at app load.
LAZY = (
    "deployer.server.entrypoint",
    "deployer.server.gunicorn_hooks",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "google.cloud.storage",
    "pymysql",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "sqlalchemy.dialects.mysql.pymysql",
    "uvicorn_worker",
    "fastapi.telemetry._runtime",
)
# Modules the server tries to import and goes on without (a Windows time zone, optional socks,
# polars and pygments support): the import fails, but only after compiling them.
TRIED = (
    "dateutil.tz.win",
    "urllib3.contrib.socks",
    "mlflow.data.polars_dataset",
    "mako.ext.pygmentplugin",
)
# Packages compiled whole: the stores and their migrations (alembic imports every version file
# to find the head), the tracing and server modules routes import on first use, and what only
# the serving processes (gunicorn, uvicorn's h11 protocol, anyio) or a route's first call load.
WHOLE = (
    "mlflow.server",
    "mlflow.store",
    "mlflow.tracing",
    "alembic",
    "gunicorn",
    "uvicorn",
    "h11",
    "anyio",
    "psycopg2",
    "opentelemetry",
    "flask_cors",
    "flask_wtf",
    "wtforms",
    "google_crc32c",
    "docker",
)
UNCHECKED = py_compile.PycInvalidationMode.UNCHECKED_HASH


def load_app(folder: str) -> None:
    """Build the app the entrypoint serves (IAP mode), on a throw-away SQLite file in `folder`."""
    os.environ.update(
        {
            "AUTH_MODE": "iap",
            "IAP_AUDIENCE": "/projects/0/global/backendServices/0",
            "IAP_JWKS_URL": "http://127.0.0.1:9/jwks",
            "BACKEND_STORE_URI": f"sqlite:///{folder}/compile.db",
            "ARTIFACTS_DESTINATION": f"{folder}/artifacts",
        }
    )
    from deployer.server.iap_app import create_asgi_app

    create_asgi_app()
    for name in LAZY:
        importlib.import_module(name)


def compile_loaded(prefixes: tuple[str, ...]) -> int:
    """Compile every loaded module whose source is under one of `prefixes`; how many were."""
    count = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None) or ""
        if source.startswith(prefixes) and source.endswith(".py") and Path(source).is_file():
            py_compile.compile(source, doraise=True, invalidation_mode=UNCHECKED)
            count += 1
    return count


def compile_tried(modules: tuple[str, ...]) -> None:
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise SystemExit(f"compile_imported: no module {name}")
        py_compile.compile(spec.origin, doraise=True, invalidation_mode=UNCHECKED)


def compile_whole(packages: tuple[str, ...]) -> None:
    """Compile every module of each package (all of its folders, namespace packages too)."""
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"compile_imported: {name} is not an installed package")
        for folder in spec.submodule_search_locations:
            if not compileall.compile_dir(folder, quiet=2, invalidation_mode=UNCHECKED):
                raise SystemExit(f"compile_imported: {folder} did not compile")


if __name__ == "__main__":
    prefixes = tuple(sys.argv[1:]) or (sys.prefix, sys.base_prefix)
    with tempfile.TemporaryDirectory(prefix="compile-imported-") as scratch:
        load_app(scratch)
        compile_whole(WHOLE)
        compile_tried(TRIED)
        print(f"compile_imported: {compile_loaded(prefixes)} loaded modules byte-compiled")
