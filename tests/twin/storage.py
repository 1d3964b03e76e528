"""Cloud Storage buckets of the twin project, kept in the GCS emulator (fake-gcs-server)."""

from __future__ import annotations

from typing import Any

import requests

from tests.twin.resources import Behaviour, CloudError, Context, register


def gcs_url(ctx: Context) -> str:
    return ctx.doc()["endpoints"]["gcs"]


def object_names(base: str, bucket: str) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"maxResults": 1000, "versions": "true"}
        if token:
            params["pageToken"] = token
        r = requests.get(f"{base}/storage/v1/b/{bucket}/o", params=params, timeout=30)
        if r.status_code == 404:
            return names
        r.raise_for_status()
        doc = r.json()
        names += [o["name"] for o in doc.get("items", [])]
        token = doc.get("nextPageToken")
        if not token:
            return names


@register("google_storage_bucket")
class Bucket(Behaviour):
    force_new = ("project", "name", "location")

    def fill(self, ctx: Context, s: dict) -> None:
        super().fill(ctx, s)
        s["id"] = s["name"]
        s["url"] = f"gs://{s['name']}"
        s["self_link"] = f"https://www.googleapis.com/storage/v1/b/{s['name']}"

    def created(self, ctx: Context, s: dict, config: dict) -> None:
        r = requests.post(
            f"{gcs_url(ctx)}/storage/v1/b",
            params={"project": s["project"]},
            json={"name": s["name"], "location": s.get("location")},
            timeout=30,
        )
        if r.status_code == 409:
            # Bucket names are global (https://cloud.google.com/storage/docs/buckets#naming).
            raise CloudError(
                f"Error creating bucket {s['name']}: googleapi: Error 409: Your previous request "
                "to create the named bucket succeeded and you already own it., conflict"
            )
        r.raise_for_status()

    def updated(self, ctx: Context, prior: dict, s: dict, config: dict) -> None:
        pass

    def deleting(self, ctx: Context, s: dict) -> None:
        base = gcs_url(ctx)
        names = object_names(base, s["name"])
        if names and not s.get("force_destroy"):
            # The provider refuses before asking Google (resource_storage_bucket.go).
            raise CloudError(
                f"Error trying to delete bucket {s['name']} containing objects without "
                "`force_destroy` set to true"
            )
        for name in names:
            requests.delete(
                f"{base}/storage/v1/b/{s['name']}/o/{requests.utils.quote(name, safe='')}",
                timeout=30,
            )
        r = requests.delete(f"{base}/storage/v1/b/{s['name']}", timeout=30)
        if r.status_code not in (200, 204, 404):
            raise CloudError(f"Error deleting bucket {s['name']}: {r.status_code} {r.text[:200]}")

    def refresh(self, ctx: Context, s: dict) -> dict:
        r = requests.get(f"{gcs_url(ctx)}/storage/v1/b/{s['name']}", timeout=30)
        return s if r.status_code == 200 else None  # type: ignore[return-value]
