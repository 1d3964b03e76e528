"""Google's front end for the twin: `*.run.app` over HTTPS, then IAP, then the revision.

Clients reach the services' real-looking URLs through an HTTPS proxy (`HTTPS_PROXY`): a CONNECT
to `NAME-NUMBER.REGION.run.app:443` is answered, TLS is terminated with a certificate for that
host signed by the twin's own CA (clients trust it through `REQUESTS_CA_BUNDLE`), and the bytes
go to that service's IAP stand-in, which checks the caller and forwards to the current revision.

IAP follows the project's state on every request: who holds roles/iap.httpsResourceAccessor on
the service, and whether IAP's service agent holds roles/run.invoker, without which IAP cannot
call the service (https://cloud.google.com/iap/docs/enabling-cloud-run#enable-iap).
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.google_fakes import GoogleFakes
from tests.support.http import Request, Response
from tests.support.iap_keys import IapKeys
from tests.support.iap_proxy import IapProxy
from tests.twin import state as st
from tests.twin.state import TwinState

ACCESSOR = "roles/iap.httpsResourceAccessor"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class TwinCA:
    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("twin CA"))
            .issuer_name(_name("twin CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.folder = folder
        self.bundle = folder / "twin-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context(self, host: str) -> ssl.SSLContext:
        if host in self._contexts:
            return self._contexts[host]
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        pem = self.folder / f"{host}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem)
        self._contexts[host] = ctx
        return ctx


class TwinIap(IapProxy):
    """The IAP stand-in for one Cloud Run service, reading members and the route from state."""

    def __init__(self, twin: TwinState, host: str, keys: IapKeys, fakes: GoogleFakes) -> None:
        self.twin = twin
        self.host = host
        super().__init__("http://127.0.0.1:9", keys, fakes, members=())

    def _state(self) -> tuple[dict, dict]:
        doc = self.twin.read()
        return doc, doc["routes"].get(self.host) or {}

    def _audiences(self) -> set[str]:
        _, route = self._state()
        urls = {f"https://{self.host}", route.get("url", "")}
        return {a for u in urls if u for a in (u, f"{u}/", f"{u}/*")}

    def _allowed(self, email: str) -> bool:
        doc, route = self._state()
        kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
        domain = email.rsplit("@", 1)[-1]
        members = st.members_with(doc, ACCESSOR, f"iap-run:{route.get('name')}")
        return f"{kind}:{email}" in members or f"domain:{domain}" in members

    def _route(self, req: Request) -> Response:
        doc, route = self._state()
        if not route:
            return Response(404, "The requested URL was not found on this server.")
        agent = (
            f"serviceAccount:service-{doc['project']['number']}@gcp-sa-iap.iam.gserviceaccount.com"
        )
        if not st.holds(doc, agent, "roles/run.invoker", f"run:{route['name']}"):
            return Response(
                403,
                "Error: Forbidden. Your client does not have permission to get URL from this "
                "server. (IAP's service agent lacks roles/run.invoker on the service.)",
            )
        self.upstream = f"http://127.0.0.1:{route['port']}"
        # A person's own Google ID token is admitted only for the OAuth clients this service's
        # google_iap_settings allowlists (read from state on every request, like the members).
        self.programmatic_clients = st.programmatic_clients(doc, route["name"])
        project_number = doc["project"]["number"]
        region = route["service"].split("/locations/")[1].split("/")[0]
        self.keys.audience = (
            f"/projects/{project_number}/locations/{region}/services/{route['name']}"
        )
        return super()._route(req)


class Front:
    """The HTTPS proxy clients use; one IAP stand-in per service host, made on first use."""

    def __init__(self, twin: TwinState, keys: IapKeys, fakes: GoogleFakes) -> None:
        self.twin = twin
        self.keys = keys
        self.fakes = fakes
        self.ca = TwinCA(twin.root)
        self._iaps: dict[str, TwinIap] = {}
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def iap(self, host: str) -> TwinIap:
        with self._lock:
            if host not in self._iaps:
                self._iaps[host] = TwinIap(self.twin, host, self.keys, self.fakes)
            return self._iaps[host]

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) < 2 or line[0] != "CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host = line[1].rsplit(":", 1)[0]
            if not host.endswith(".run.app"):
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            tls = self.ca.context(host).wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.iap(host).server.port))
            _pipe(tls, upstream)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for iap in self._iaps.values():
            iap.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(timeout=5)
    b.close()
