"""An ASGI app that answers with how many objects its worker's garbage collector has frozen
(`gc.get_freeze_count()`), served by the entrypoint's own gunicorn command line in place of
MLflow's app; it builds a large heap while loading, as MLflow's preloaded app does."""

from __future__ import annotations

import gc
from typing import Any

PRELOADED = [[i] for i in range(50_000)]  # lists: the collector tracks every one


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = str(gc.get_freeze_count()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
