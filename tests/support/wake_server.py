"""MLflow's own Flask app behind the wake middleware, for tests: `python -m
tests.support.wake_server PORT`. The backend store and artifact root come from MLflow's
server environment variables; the wake settings from the usual ones (deployer/server/wake.py)."""

from __future__ import annotations

import socketserver
import sys
from wsgiref.simple_server import WSGIServer, make_server


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main(port: int) -> None:
    from mlflow.server import app

    from deployer.server import wake

    app.wsgi_app = wake.wrap_wsgi(app.wsgi_app)
    server = make_server("127.0.0.1", port, app, server_class=_ThreadingServer)
    print(f"serving on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
