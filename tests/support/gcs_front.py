"""GCS's XML API pieces the emulators lack, in front of fake-gcs-server.

fake-gcs-server speaks GCS's JSON API; MLflow's large-artifact path also needs the XML multipart
upload API (initiate, parts, complete, abort) and V4-signed URLs. This front implements exactly
those, verifying every signed URL against the signing service account's public key (RSA-SHA256
over GCS's canonical request, expiry included), and forwards all other requests unchanged to the
emulator. Completed uploads are written into the emulator, so they are ordinary objects after.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote
from xml.etree import ElementTree

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.support.http import LocalHttpServer, Request, Response

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


@dataclass
class Upload:
    bucket: str
    name: str
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)


def _xml(tag: str, **children: str) -> bytes:
    root = ElementTree.Element(tag, xmlns=S3_NS)
    for k, v in children.items():
        ElementTree.SubElement(root, k).text = v
    return b"<?xml version='1.0' encoding='UTF-8'?>" + ElementTree.tostring(root)


def _xml_error(status: int, code: str, message: str) -> Response:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{message}</Message></Error>"
    )
    return Response(status, body.encode(), {"Content-Type": "application/xml"})


class GcsFront:
    def __init__(self, emulator_url: str, public_key_for: Callable[[str], object]) -> None:
        self.emulator_url = emulator_url
        self.public_key_for = public_key_for  # service account email -> RSA public key
        self.uploads: dict[str, Upload] = {}
        self.signed_requests: list[tuple[str, str]] = []  # (method, path) of verified URLs
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self.server = LocalHttpServer(self._route)
        self.url = self.server.url

    # ----- V4 signed URLs ------------------------------------------------------------------
    def _verify_signed(self, req: Request) -> str | None:
        """None when the V4 signature and expiry hold, else the reason."""
        params = dict(parse_qsl(req.raw_query, keep_blank_values=True))
        signature = params.get("X-Goog-Signature")
        if params.get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" or not signature:
            return "not a V4 signed URL"
        canonical_query = "&".join(
            p for p in req.raw_query.split("&") if not p.startswith("X-Goog-Signature=")
        )
        email, _, scope = params["X-Goog-Credential"].partition("/")
        signed_headers = params["X-Goog-SignedHeaders"]
        canonical_headers = "".join(
            f"{h}:{req.headers.get(h, '').strip()}\n" for h in signed_headers.split(";")
        )
        canonical_request = "\n".join(
            [
                req.method,
                req.path,
                canonical_query,
                canonical_headers,
                signed_headers,
                "UNSIGNED-PAYLOAD",
            ]
        )
        string_to_sign = "\n".join(
            [
                "GOOG4-RSA-SHA256",
                params["X-Goog-Date"],
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        key = self.public_key_for(email)
        if key is None:
            return f"unknown signer {email}"
        try:
            key.verify(
                bytes.fromhex(signature),
                string_to_sign.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return "signature does not match"
        start = datetime.datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC
        )
        if datetime.datetime.now(datetime.UTC) > start + datetime.timedelta(
            seconds=int(params["X-Goog-Expires"])
        ):
            return "signed URL expired"
        return None

    def _authorized(self, req: Request) -> Response | None:
        if "X-Goog-Signature" in req.raw_query:
            reason = self._verify_signed(req)
            if reason is not None:
                self.rejected.append(reason)
                return _xml_error(403, "SignatureDoesNotMatch", reason)
            self.signed_requests.append((req.method, req.path))
            return None
        if not req.headers.get("authorization", "").startswith("Bearer "):
            return _xml_error(401, "AuthenticationRequired", "no credentials")
        return None

    # ----- routing ----------------------------------------------------------------------------
    def _route(self, req: Request) -> Response:
        q = req.query
        xml_object = not req.path.startswith(("/storage/", "/upload/", "/download/"))
        if xml_object and ("uploads" in q or "uploadId" in q or "X-Goog-Signature" in q):
            if (denied := self._authorized(req)) is not None:
                return denied
            bucket, _, name = req.path.lstrip("/").partition("/")
            name = unquote(name)
            if req.method == "POST" and "uploads" in q:
                upload_id = secrets.token_hex(16)
                with self._lock:
                    self.uploads[upload_id] = Upload(
                        bucket, name, req.headers.get("content-type", "application/octet-stream")
                    )
                return Response(
                    200,
                    _xml(
                        "InitiateMultipartUploadResult", Bucket=bucket, Key=name, UploadId=upload_id
                    ),
                    {"Content-Type": "application/xml"},
                )
            if "uploadId" in q:
                upload = self.uploads.get(q["uploadId"][0])
                if upload is None or (upload.bucket, upload.name) != (bucket, name):
                    return _xml_error(404, "NoSuchUpload", "unknown upload id")
                return self._upload_step(req, q["uploadId"][0], upload)
            if req.method == "GET":
                return self._forward(
                    req, f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}", "alt=media"
                )
        return self._forward(req, req.path, req.raw_query)

    def _upload_step(self, req: Request, upload_id: str, upload: Upload) -> Response:
        if req.method == "PUT" and "partNumber" in req.query:
            number = int(req.query["partNumber"][0])
            with self._lock:
                upload.parts[number] = req.body
            return Response(200, b"", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})
        if req.method == "POST":
            root = ElementTree.fromstring(req.body)
            listed = [
                (int(p.findtext("PartNumber")), p.findtext("ETag").strip('"'))
                for p in root.iter("Part")
            ]
            for number, etag in listed:
                data = upload.parts.get(number)
                if data is None or hashlib.md5(data).hexdigest() != etag:
                    return _xml_error(400, "InvalidPart", f"part {number} is missing or differs")
            data = b"".join(upload.parts[n] for n, _ in sorted(listed))
            r = requests.post(
                f"{self.emulator_url}/upload/storage/v1/b/{upload.bucket}/o",
                params={"uploadType": "media", "name": upload.name},
                data=data,
                headers={"Content-Type": upload.content_type},
                timeout=120,
            )
            if r.status_code != 200:
                return _xml_error(500, "InternalError", r.text[:200])
            with self._lock:
                del self.uploads[upload_id]
            return Response(
                200,
                _xml(
                    "CompleteMultipartUploadResult",
                    Bucket=upload.bucket,
                    Key=upload.name,
                    ETag=r.json().get("etag", ""),
                ),
                {"Content-Type": "application/xml"},
            )
        if req.method == "DELETE":
            with self._lock:
                self.uploads.pop(upload_id, None)
            return Response(204, b"")
        return _xml_error(405, "MethodNotAllowed", req.method)

    def _forward(self, req: Request, path: str, raw_query: str) -> Response:
        headers = {k: v for k, v in req.headers.items() if k not in _HOP_HEADERS}
        url = f"{self.emulator_url}{path}" + (f"?{raw_query}" if raw_query else "")
        r = requests.request(
            req.method, url, data=req.body or None, headers=headers, timeout=300, stream=True
        )
        body = r.raw.read(decode_content=False)
        keep = {
            k: v
            for k, v in r.headers.items()
            if k.lower() not in _HOP_HEADERS | {"content-encoding"}
        }
        if r.headers.get("content-encoding"):
            keep["Content-Encoding"] = r.headers["content-encoding"]
        return Response(r.status_code, body, keep)

    def close(self) -> None:
        self.server.close()
