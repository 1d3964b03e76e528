"""MLflow's own Flask app behind the wake middleware, for tests: `python -m
tests.support.wake_server PORT`. The backend store and artifact root come from MLflow's
server environment variables; the wake settings from the usual ones (deployer/server/wake.py)."""

from __future__ import annotations

import sys

from werkzeug.serving import make_server


def main(port: int) -> None:
    from mlflow.server import app

    from deployer.server import wake

    app.wsgi_app = wake.wrap_wsgi(app.wsgi_app)
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(f"serving on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
