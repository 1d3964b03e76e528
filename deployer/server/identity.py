"""Stamp the verified identity on what a request creates, whatever the client claims.

The team's single view must show who logged what. MLflow takes the run's `user_id` and the
`mlflow.user` tag from the client, so a client could claim anyone; behind IAP we know the
verified email and overwrite both. Registered models and model versions have no user field in
MLflow's REST API, so they carry the same `mlflow.user` tag.
"""

from __future__ import annotations

import json
from typing import Any

IDENTITY_TAG = "mlflow.user"

_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")
# endpoint -> the body field holding the tags it creates or sets
_TAGGED_CREATES = {
    "runs/create": "tags",
    "registered-models/create": "tags",
    "model-versions/create": "tags",
    "runs/log-batch": "tags",
}
_SET_TAG = {"runs/set-tag", "registered-models/set-tag", "model-versions/set-tag"}


def endpoint(path: str) -> str | None:
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def needs_stamp(method: str, path: str) -> bool:
    ep = endpoint(path)
    return method == "POST" and ep is not None and (ep in _TAGGED_CREATES or ep in _SET_TAG)


def stamp(path: str, body: dict[str, Any], email: str) -> dict[str, Any]:
    """Return the request body with the identity enforced for this endpoint."""
    ep = endpoint(path)
    if ep in _SET_TAG:
        if body.get("key") == IDENTITY_TAG:
            body["value"] = email
        return body
    if ep not in _TAGGED_CREATES:
        return body
    field = _TAGGED_CREATES[ep]
    if not isinstance(body.get(field) or [], list):
        return body  # malformed: leave it for MLflow to reject with its own 400
    tags = [t for t in body.get(field) or [] if isinstance(t, dict)]
    if ep == "runs/log-batch":
        # log-batch only overwrites the tag if the client tried to set it.
        for tag in tags:
            if tag.get("key") == IDENTITY_TAG:
                tag["value"] = email
        if field in body:
            body[field] = tags
        return body
    tags = [t for t in tags if t.get("key") != IDENTITY_TAG]
    tags.append({"key": IDENTITY_TAG, "value": email})
    body[field] = tags
    if ep == "runs/create":
        body["user_id"] = email
    return body


def stamp_bytes(path: str, raw: bytes, email: str) -> bytes:
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw  # MLflow will reject it with its own error
    if not isinstance(body, dict):
        return raw
    return json.dumps(stamp(path, body, email)).encode()
