"""The public registries, offline: a local HTTPS proxy that answers as Docker Hub, Quay and
registry.k8s.io do, backed by a real Distribution registry.

A stand-in, because the real services cannot be reached from here (only PyPI, Debian and npm are). It
is as strict as the real ones where a client can go wrong (REGISTRIES.md, "Public registries"):

* ``docker.io`` is a name, not an API: any request to it answers 301 to ``www.docker.com``
  (docker/hub-feedback#1767), which answers a web page.
* ``registry-1.docker.io`` asks for ``Bearer realm="https://auth.docker.io/token",service="registry.docker.io"``;
  ``auth.docker.io`` issues tokens for exactly the scopes asked (anonymous for public repositories,
  Basic credentials or an identity token for private ones); a missing token, a token for another
  repository or another service is a 401, as is any Basic header sent to the registry itself. Blob
  GETs answer 307 to a signed URL on ``production.cloudflare.docker.com``, which refuses any request
  that carries ``Authorization`` (S3's "Only one auth mechanism allowed") or a bad signature.
  ``rate_limited = True`` makes manifest requests answer Hub's 429 TOOMANYREQUESTS with its
  ``ratelimit-*`` headers.
* ``quay.io``: the same token dance with its realm ``https://quay.io/v2/auth`` (on the registry's own
  host); blobs are redirected to ``cdn01.quay.io``.
* ``registry.k8s.io`` redirects every request (``/v2/`` included) with 307 to a regional backend,
  ``us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/...``, which serves anonymously and refuses
  requests carrying an ``Authorization`` header meant for another host.

The proxy listens on 127.0.0.1 only. It accepts ``CONNECT`` to port 443 of the hosts above and nothing
else (other hosts, other ports and plain-HTTP proxying are refused with 403 and recorded in
``refused``), so no client routed through it can reach the internet. Clients use it through
``env()``: ``HTTPS_PROXY`` (httpx's ``trust_env``), ``NO_PROXY`` for loopback and ``SSL_CERT_FILE``
naming the trustme CA that signs the emulated hosts' certificate. Every request the emulated hosts
answer is recorded in ``log`` with the Authorization header it carried, for assertions on where
credentials went.

Images live in the backend under a prefix per registry (``hub/``, ``quay/``, ``k8s/``); ``seed``
publishes an OCI layout image under its public name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from registry_server import RegistryProcess, start_registry

HUB_REGISTRY = "registry-1.docker.io"
HUB_AUTH = "auth.docker.io"
HUB_CDN = "production.cloudflare.docker.com"
QUAY = "quay.io"
QUAY_CDN = "cdn01.quay.io"
K8S = "registry.k8s.io"
K8S_BACKEND = "us-west1-docker.pkg.dev"
K8S_BACKEND_ROOT = "k8s-artifacts-prod/images"
EMULATED = ("docker.io", "www.docker.com", HUB_REGISTRY, HUB_AUTH, HUB_CDN, QUAY, QUAY_CDN, K8S, K8S_BACKEND)
_API_RE = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags|referrers)/(.*)$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "host"}


@dataclass
class Logged:
    host: str
    method: str
    path: str                 # with query
    authorization: str | None
    status: int = 0


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class _Token:
    service: str
    access: set[str]          # "repository:<name>:pull"
    user: str | None
    expires: float


def _json(status: int, doc: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode())


def _oci_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return _json(status, {"errors": [{"code": code, "message": message}]}, headers)


class PublicRegistries:
    """The emulation; use :func:`running_public_registries` (or the ``public_registries`` fixture)."""

    def __init__(self, workdir: Path):
        import trustme

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_process: RegistryProcess = start_registry(self.workdir / "backend")
        self.backend = self.backend_process.registry
        ca = trustme.CA()
        leaf = ca.issue_cert(*EMULATED)
        self.ca_file = self.workdir / "public-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(self._tls)
        self.log: list[Logged] = []
        self.refused: list[str] = []
        self.users: dict[str, str] = {}            # Hub / Quay accounts: user -> password
        self.identity_tokens: dict[str, str] = {}  # docker login's refresh tokens -> user
        self.private: dict[str, set[str]] = {}     # public name "docker.io/acme/app" -> users allowed
        self.rate_limited = False
        self._tokens: dict[str, _Token] = {}
        self._cdn_key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60.0)
        app = self

        class Vhost(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            vhost = ""

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = Logged(self.vhost, self.command, self.path, headers.get("authorization"))
                with app._lock:
                    app.log.append(entry)
                try:
                    reply = app._route(self.vhost, self.command, self.path, headers, body)
                except Exception as exc:  # a bug in the stand-in: say so rather than hang the client
                    reply = Reply(500, {"Content-Type": "text/plain"}, f"stand-in error: {exc!r}".encode())
                entry.status = reply.status
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", reply.headers.get("Content-Length", str(len(reply.body))))
                self.end_headers()
                if self.command != "HEAD" and reply.body:
                    self.wfile.write(reply.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        vhosts = {h: type(f"Vhost_{h}", (Vhost,), {"vhost": h}) for h in EMULATED}

        class Proxy(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_CONNECT(self) -> None:
                host, _, port = self.path.rpartition(":")
                if host not in vhosts or port != "443":
                    app.refused.append(self.path)
                    self.send_response(403, "not emulated")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.close_connection = True
                    return
                self.send_response(200, "Connection Established")
                self.end_headers()
                self.wfile.flush()
                try:
                    tls = app._tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    self.close_connection = True
                    return
                try:
                    vhosts[host](tls, self.client_address, self.server)
                finally:
                    self.close_connection = True
                    try:
                        tls.close()
                    except OSError:
                        pass

            def _refuse(self) -> None:  # plain-HTTP proxying (GET http://...): never to the internet
                app.refused.append(f"{self.command} {self.path}")
                self.send_response(403, "not emulated")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- for tests ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment that routes a trust_env client (httpx, skopeo) through the emulation."""
        proxy = f"http://{self.host}"
        return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "127.0.0.1,localhost,::1",
                "no_proxy": "127.0.0.1,localhost,::1", "SSL_CERT_FILE": str(self.ca_file)}

    def requests_to(self, host: str) -> list[Logged]:
        return [e for e in self.log if e.host == host]

    @staticmethod
    def backend_repository(public: str) -> str:
        """Where a public repository (``docker.io/library/busybox``) lives in the backend."""
        registry, _, path = public.partition("/")
        prefix = {"docker.io": "hub", QUAY: "quay", K8S: "k8s"}[registry]
        return f"{prefix}/{path}"

    def seed(self, layout: Path, layout_ref: str, public_ref: str) -> str:
        """Publish ``layout_ref`` of an OCI layout as ``public_ref`` (``docker.io/x/y:tag``); its digest."""
        from airgap.copy import CopyEngine, CopyJob
        from airgap.model import Reference
        from airgap.places.layout import LayoutStore
        from airgap.places.registry import RegistryStore
        from airgap.registry.client import RegistryClient, RegistryOptions

        ref = Reference.parse(public_ref)
        client = RegistryClient(self.backend.host, RegistryOptions(insecure=True))
        try:
            dst = RegistryStore(client, self.backend_repository(f"{ref.registry}/{ref.repository}"))
            CopyEngine(concurrency=2).copy([CopyJob(ref.repository, LayoutStore(layout), layout_ref, dst,
                                                    [ref.tag or "latest"])])
            return str(dst.resolve_tag(ref.tag or "latest"))
        finally:
            client.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
        self.backend_process.stop()

    # -- routing -----------------------------------------------------------------------------------
    def _route(self, host: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if host == "docker.io":
            return Reply(301, {"Location": "https://www.docker.com/"})
        if host == "www.docker.com":
            return Reply(200, {"Content-Type": "text/html"}, b"<!doctype html><title>Docker</title>")
        if host == HUB_AUTH:
            if urlsplit(path).path != "/token":
                return Reply(404)
            return self._token_service("registry.docker.io", "docker.io", method, path, headers, body)
        if host == HUB_REGISTRY:
            return self._registry("docker.io", "hub", "https://auth.docker.io/token", "registry.docker.io", HUB_CDN,
                                  method, path, headers)
        if host == QUAY:
            if urlsplit(path).path == "/v2/auth":
                return self._token_service("quay.io", QUAY, method, path, headers, body)
            return self._registry(QUAY, "quay", "https://quay.io/v2/auth", "quay.io", QUAY_CDN, method, path, headers)
        if host in (HUB_CDN, QUAY_CDN):
            return self._cdn(path, headers)
        if host == K8S:
            if not path.startswith("/v2/"):
                return Reply(404)
            rest = path[len("/v2/"):]
            target = f"https://{K8S_BACKEND}/v2/{K8S_BACKEND_ROOT}/{rest}" if rest else f"https://{K8S_BACKEND}/v2/"
            return Reply(307, {"Location": target})
        if host == K8S_BACKEND:
            if "authorization" in headers:
                return _oci_error(403, "DENIED", "an Authorization header for another host was sent here")
            if path.split("?")[0] == "/v2/":
                return _json(200, {})
            prefix = f"/v2/{K8S_BACKEND_ROOT}/"
            if not path.startswith(prefix):
                return _oci_error(404, "NAME_UNKNOWN", "repository not found")
            return self._forward(method, f"/v2/k8s/{path[len(prefix):]}", headers)
        return Reply(404)

    def _token_service(self, service: str, registry: str, method: str, path: str, headers: dict[str, str],
                       body: bytes) -> Reply:
        if method == "POST":  # OAuth2 refresh-token grant (docker login's identity token)
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.identity_tokens:
                return _json(401, {"details": "invalid refresh token"})
            user = self.identity_tokens[form["refresh_token"]]
            query = {"service": [form.get("service", "")], "scope": (form.get("scope") or "").split()}
        elif method == "GET":
            query = parse_qs(urlsplit(path).query)
            user = None
            auth = headers.get("authorization")
            if auth:
                scheme, _, value = auth.partition(" ")
                if scheme.lower() != "basic":
                    return _json(401, {"details": "token service takes Basic credentials"})
                try:
                    name, _, password = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    return _json(400, {"details": "malformed Basic credentials"})
                if self.users.get(name) != password:
                    return _json(401, {"details": "incorrect username or password"})
                user = name
        else:
            return Reply(405)
        if (query.get("service") or [""])[-1] != service:
            return _json(400, {"details": f"invalid service; this token service is {service}"})
        access: set[str] = set()
        for scope in [s for item in query.get("scope", []) for s in item.split()]:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            allowed = self.private.get(f"{registry}/{name}")
            if "pull" in actions.split(",") and (allowed is None or (user is not None and user in allowed)):
                access.add(f"repository:{name}:pull")  # never push: nobody publishes here
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = _Token(service, access, user, time.time() + 300)
        return _json(200, {"token": token, "access_token": token, "expires_in": 300,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def _registry(self, registry: str, prefix: str, realm: str, service: str, cdn: str, method: str, path: str,
                  headers: dict[str, str]) -> Reply:
        bare = path.split("?")[0]
        m = _API_RE.match(bare)
        scope = f"repository:{m.group(1)}:pull" if m else ""
        challenge = f'Bearer realm="{realm}",service="{service}"' + (f',scope="{scope}"' if scope else "")
        auth = headers.get("authorization") or ""
        token = self._tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if token is None or token.service != service or token.expires < time.time():
            # Basic to the registry itself, an unknown token or none at all: the real ones answer 401.
            return _oci_error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        if bare == "/v2/":
            return _json(200, {})
        if m is None:
            return _oci_error(404, "NOT_FOUND", "not found")
        if method not in ("GET", "HEAD"):
            return _oci_error(401, "UNAUTHORIZED", "this emulation is read-only: pull only",
                              {"WWW-Authenticate": challenge.replace(":pull", ":pull,push")})
        if scope not in token.access:
            return _oci_error(401, "UNAUTHORIZED", "insufficient scope",
                              {"WWW-Authenticate": challenge + ',error="insufficient_scope"'})
        if self.rate_limited and registry == "docker.io" and m.group(2) == "manifests":
            return _oci_error(429, "TOOMANYREQUESTS", "You have reached your unauthenticated pull rate limit. "
                              "https://www.docker.com/increase-rate-limit",
                              {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600",
                               "docker-ratelimit-source": "203.0.113.7"})
        backend_path = f"/v2/{prefix}/{m.group(1)}/{m.group(2)}/{m.group(3)}" + (
            "?" + path.split("?", 1)[1] if "?" in path else "")
        if m.group(2) == "blobs" and method == "GET" and m.group(3).startswith("sha256:"):
            hexd = m.group(3)[len("sha256:"):]
            head = self._http.head(self.backend.url(backend_path))
            if head.status_code != 200:
                return _oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            storage = f"/registry-v2/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
            expires = str(int(time.time()) + 1200)
            return Reply(307, {"Location": f"https://{cdn}{storage}?verify={self._sign(storage, expires)}"
                                           f"&expires={expires}"})
        return self._forward(method, backend_path, headers)

    def _sign(self, path: str, expires: str) -> str:
        return quote(hmac.new(self._cdn_key, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest())

    def _cdn(self, path: str, headers: dict[str, str]) -> Reply:
        if "authorization" in headers:
            return Reply(400, {"Content-Type": "application/xml"},
                         b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>")
        parts = urlsplit(path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not q.get("expires") or q.get("verify") != self._sign(parts.path, q["expires"]):
            return Reply(403, {"Content-Type": "application/xml"}, b"<Error><Code>AccessDenied</Code></Error>")
        rel = parts.path[len("/registry-v2/"):] if parts.path.startswith("/registry-v2/") else ""
        file = self.backend.data_dir / rel
        if not rel or ".." in rel or not file.is_file():
            return Reply(404)
        return Reply(200, {"Content-Type": "application/octet-stream"}, file.read_bytes())

    def _forward(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        out = {k: v for k, v in headers.items() if k not in _HOP and k != "authorization"}
        resp = self._http.request(method, self.backend.url(path), headers=out)
        keep = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        if method == "HEAD" and resp.headers.get("content-length"):
            keep["Content-Length"] = resp.headers["content-length"]
        return Reply(resp.status_code, keep, resp.content if method != "HEAD" else b"")


@contextmanager
def running_public_registries(workdir: Path) -> Iterator[PublicRegistries]:
    emulation = PublicRegistries(workdir)
    try:
        yield emulation
    finally:
        emulation.stop()
