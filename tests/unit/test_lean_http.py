"""Small registry requests go over http.client (airgap/registry/lean.py) and behave as through httpx:
a keep-alive connection the server dropped while idle is replaced at once (no retry backoff), a cookie
the registry sets (a load balancer's affinity) comes back on later requests, an unreachable registry
is named as before, and a proxy in the environment sends everything through httpx, which honours it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airgap.errors import RegistryError
from airgap.registry.client import RegistryClient, RegistryOptions


class _Server:
    """HTTP/1.1 on loopback; ``drop``: close each connection after its answer without saying so."""

    def __init__(self, drop: bool = False, cookie: str = ""):
        self.seen: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if cookie:
                    self.send_header("Set-Cookie", f"{cookie}; Path=/")
                body = b'{"ok":true}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if drop:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    made: list[_Server] = []

    def make(**kw) -> _Server:
        made.append(_Server(**kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _client(host: str, **kw) -> RegistryClient:
    # One attempt, a long backoff: a dropped connection that were not replaced at once would fail the call.
    return RegistryClient(host, RegistryOptions(insecure=True, retries=1, backoff=30.0, **kw))


def _get(client: RegistryClient, path: str = "/v2/") -> dict:
    return client.request("GET", path, scope="", what="test").json()


def test_a_connection_dropped_while_idle_is_replaced_at_once(server_factory):
    server = server_factory(drop=True)
    client = _client(server.host)
    try:
        assert client._lean is not None
        for _ in range(3):
            assert _get(client) == {"ok": True}
    finally:
        client.close()
    assert len(server.seen) == 3


def test_a_cookie_the_registry_sets_is_sent_back(server_factory):
    server = server_factory(cookie="affinity=node-2")
    client = _client(server.host)
    try:
        _get(client)
        _get(client)
    finally:
        client.close()
    assert "cookie" not in server.seen[0]
    assert server.seen[1].get("cookie") == "affinity=node-2"


def test_an_unreachable_registry_is_named(server_factory):
    server = server_factory()
    host = server.host
    server.stop()
    client = _client(host)
    try:
        with pytest.raises(RegistryError, match=f"cannot reach registry {host}"):
            _get(client)
    finally:
        client.close()


def test_a_proxy_in_the_environment_keeps_every_request_on_httpx(server_factory, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = _client(server_factory().host)
    try:
        assert client._lean is None
    finally:
        client.close()
