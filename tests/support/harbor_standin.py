"""A Harbor v2 stand-in: Harbor's core (API, token service, /v2 proxy) in front of a real
Distribution registry that runs with token auth, as it does inside Harbor.

Written from Harbor's published swagger (api/v2.0/swagger.yaml: ``GET /systeminfo``,
``HEAD /projects?project_name=``, ``POST /projects``) and its documented behaviour
(../shared/REGISTRIES.md), not from Harbor's code:
- ``/service/token`` issues Docker registry tokens (ES256 JWT, ``kid`` in libtrust form, which
  Distribution checks against ``rootcertbundle``) to users and robot accounts (``robot$<project>+<name>``);
  access to a repository of a project that does not exist is simply not granted, so the registry
  answers the push with 401 "unauthorized", Harbor's misleading answer for a missing project;
- projects can be created by the admin only (a project robot gets 403);
- a project marked immutable refuses any manifest PUT to an existing tag with 412, even when the
  digest is the same (Harbor tag immutability rules), and lists one rule matching every repository and
  tag at ``GET /projects/{name}/immutabletagrules``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from http_proxy import Proxy, Reply, Request

SERVICE = "harbor-registry"
ISSUER = "harbor-token-issuer"
MANIFEST_ACCEPT = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
                   "application/vnd.docker.distribution.manifest.list.v2+json, "
                   "application/vnd.docker.distribution.manifest.v2+json")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_kid(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenSigner:
    def __init__(self, workdir: Path):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2)).sign(self.key, hashes.SHA256()))
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.kid = _libtrust_kid(self.key.public_key())

    def token(self, subject: str, access: list[dict], ttl: int = 300) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + ttl, "nbf": now - 5, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _json(status: int, doc: object) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(doc).encode())


def _error(status: int, code: str, message: str) -> Reply:
    return _json(status, {"errors": [{"code": code, "message": message}]})


@dataclass
class HarborStandIn:
    signer: TokenSigner
    users: dict[str, str]                        # name -> password; "admin" may create projects
    projects: set[str] = field(default_factory=set)
    immutable: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)
    proxy: Proxy | None = None
    registry_host: str = ""

    # -- wiring -----------------------------------------------------------------------------------
    def start(self) -> str:
        self.proxy = Proxy("http://placeholder", hook=self.handle)
        return self.proxy.host

    def attach(self, registry_host: str) -> None:
        assert self.proxy is not None
        self.registry_host = registry_host
        self.proxy.upstream = f"http://{registry_host}"

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()

    @property
    def host(self) -> str:
        assert self.proxy is not None
        return self.proxy.host

    def auth_config(self) -> dict:
        return {"token": {"realm": f"http://{self.host}/service/token", "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.signer.bundle)}}

    # -- requests ---------------------------------------------------------------------------------
    def _user(self, req: Request) -> str | None:
        header = req.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def handle(self, req: Request) -> Reply | None:
        url = urlsplit(req.path)
        query = parse_qs(url.query)
        if url.path == "/service/token":
            return self._token(req, query)
        if url.path == "/api/v2.0/systeminfo":
            return _json(200, {"harbor_version": "v2.11.0-standin", "auth_mode": "db_auth"})
        if url.path == "/api/v2.0/projects":
            return self._projects(req, query)
        if url.path.startswith("/api/v2.0/projects/") and url.path.endswith("/immutabletagrules"):
            return self._rules(req, url.path.split("/")[4])
        if url.path.startswith("/api/"):
            return _error(404, "NOT_FOUND", "not in this stand-in")
        if req.method == "PUT" and "/manifests/" in url.path:
            return self._immutability(req, url.path)
        return None  # /v2/...: to the registry, which checks the token

    def _token(self, req: Request, query: dict[str, list[str]]) -> Reply:
        user = self._user(req)
        if req.headers.get("authorization") and user is None:
            return _error(401, "UNAUTHORIZED", "invalid username or password")
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            project = name.split("/", 1)[0]
            if kind != "repository" or project not in self.projects or user is None:
                continue  # Harbor grants nothing on a missing project: the push then gets 401
            if user.startswith("robot$") and not user.startswith(f"robot${project}+"):
                continue
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        return _json(200, {"token": self.signer.token(user or "anonymous", access), "expires_in": 300})

    def _projects(self, req: Request, query: dict[str, list[str]]) -> Reply:
        user = self._user(req)
        if user is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        if req.method == "HEAD":
            return Reply(200 if query.get("project_name", [""])[0] in self.projects else 404)
        if req.method == "POST":
            doc = json.loads(req.read_body() or b"{}")
            name = doc.get("project_name", "")
            if user != "admin":
                return _error(403, "FORBIDDEN", "forbidden")
            if name in self.projects:
                return _error(409, "CONFLICT", f"The project named {name} already exists")
            self.projects.add(name)
            self.created.append(name)
            return Reply(201, {"Location": f"/api/v2.0/projects/{len(self.projects)}"})
        return _error(405, "METHOD_NOT_ALLOWED", "not in this stand-in")

    def _rules(self, req: Request, project: str) -> Reply:
        """GET /projects/{project_name}/immutabletagrules (swagger v2.0): the project's ImmutableRule list."""
        if self._user(req) is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        if project not in self.projects:
            return _error(404, "NOT_FOUND", f"project {project} not found")
        rules = [{"id": 1, "priority": 0, "disabled": False, "action": "immutable", "template": "immutable_template",
                  "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                  "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                      "pattern": "**"}]}}] if project in self.immutable else []
        return _json(200, rules)

    def _immutability(self, req: Request, path: str) -> Reply | None:
        repo, _, ref = path[len("/v2/"):].rpartition("/manifests/")
        if ref.startswith("sha256:") or repo.split("/", 1)[0] not in self.immutable:
            return None
        import httpx
        token = self.signer.token("core", [{"type": "repository", "name": repo, "actions": ["pull"]}])
        head = httpx.head(f"http://{self.registry_host}/v2/{repo}/manifests/{ref}",
                          headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT})
        if head.status_code == 200:
            return _error(412, "PRECONDITION", f"Failed to process request due to '{ref}' configured as immutable.")
        return None
