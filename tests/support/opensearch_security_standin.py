"""A stand-in for the two OpenSearch security-plugin endpoints the chart's postStart hook uses
(files/sync-admin-password.sh).  OpenSearch itself cannot run here (no JVM image, no network).

As strict as the real plugin on what the hook relies on:
- HTTPS only; GET /_plugins/_security/authinfo answers 503 until "started", then 200 for the
  stored admin password (HTTP Basic) and 401 for anything else;
- PUT /_plugins/_security/api/internalusers/admin is allowed only to the super-admin client
  certificate (CN=kirk, signed by the node CA); basic auth does not grant it (403); the body must be
  JSON with a `password` and no `hash`; the password must pass OpenSearch's default validation
  regex (upper, lower, digit, symbol, 8+), else 400 like the real API.
It records every request so a test can see what the hook did.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme

_STRONG = re.compile(r"(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^a-zA-Z0-9]).{8,}")


class SecurityStandIn:
    def __init__(self, admin_password: str, *, unavailable_requests: int = 2) -> None:
        self.admin_password = admin_password
        self.unavailable = unavailable_requests
        self.requests: list[tuple[str, str, str]] = []   # (method, path, "cert"|"basic"|"none")
        self.ca = trustme.CA()
        self.client_cert = self.ca.issue_cert("kirk", common_name="kirk")
        self.other_cert = trustme.CA().issue_cert("mallory", common_name="mallory")
        server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(ctx)
        self.ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_OPTIONAL   # like plugins.security.ssl.http.clientauth_mode: OPTIONAL
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _identity(self) -> str:
                cert = self.connection.getpeercert()
                if cert and dict(x[0] for x in cert["subject"]).get("commonName") == "kirk":
                    return "cert"
                return "basic" if self.headers.get("Authorization") else "none"

            def _basic_ok(self) -> bool:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Basic "):
                    return False
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user == "admin" and password == standin.admin_password

            def do_GET(self):
                standin.requests.append(("GET", self.path, self._identity()))
                if standin.unavailable > 0:
                    standin.unavailable -= 1
                    return self._send(503, {"error": "OpenSearch Security not initialized."})
                if self.path != "/_plugins/_security/authinfo":
                    return self._send(404, {})
                if self._basic_ok():
                    return self._send(200, {"user_name": "admin", "backend_roles": ["admin"]})
                return self._send(401, {"error": "Unauthorized"})

            def do_PUT(self):
                identity = self._identity()
                standin.requests.append(("PUT", self.path, identity))
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path != "/_plugins/_security/api/internalusers/admin":
                    return self._send(404, {})
                if identity != "cert":
                    return self._send(403, {"status": "FORBIDDEN", "message": "Resource 'admin' is reserved."})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, {"status": "error", "reason": "Unable to parse content"})
                if "hash" in body or not isinstance(body.get("password"), str):
                    return self._send(400, {"status": "error", "reason": "password required"})
                if not _STRONG.fullmatch(body["password"]):
                    return self._send(400, {"status": "error", "reason": "Password does not match validation regex"})
                standin.admin_password = body["password"]
                return self._send(200, {"status": "OK", "message": "'admin' updated."})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SecurityStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def write_client_cert(self, directory, *, trusted: bool = True) -> None:
        """kirk.pem / kirk-key.pem as the demo configuration leaves them in the config directory."""
        cert = self.client_cert if trusted else self.other_cert
        (directory / "kirk.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        (directory / "kirk-key.pem").write_bytes(cert.private_key_pem.bytes())
