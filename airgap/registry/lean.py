"""Small registry requests over the standard library's http.client, answered as httpx Responses.

A load of many small images is mostly small requests: an upload session opened, a mount, a manifest
PUT, a HEAD. Through httpx each costs ~1.4 ms of CPU on a small host (its client layer: hooks, cookie
jar, URL models; then httpcore and h11), http.client ~0.6 ms with the Response built, and the tool's
CPU shares two cores with the registry's. So :class:`RegistryClient` sends requests whose body is in
memory and whose answer is read whole through here, on keep-alive connections of its own; streamed
bodies and answers (blobs) stay on httpx. Callers see the same ``httpx.Response`` (status, headers,
``url``, ``links``, ``json()``), and transport failures raise the same ``httpx.TransportError``
classes, so retries, redirects and authentication above are unchanged.

TLS verifies exactly as the httpx client would (``httpx.create_ssl_context``: certifi, or
SSL_CERT_FILE / SSL_CERT_DIR, or the ``--ca-file`` context), and that context is built on the first
HTTPS request only (a plain-HTTP registry never pays for parsing a CA bundle). Not used when a proxy
is configured in the environment (httpx routes through it; this does not) or when a transport is given
(tests' MockTransport).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx

#: A connection the server closed while it sat idle fails on reuse with one of these before any answer:
#: the request is sent again on a new connection at once, as httpcore and urllib3 do.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def proxied_environment() -> bool:
    """A proxy is configured in the environment (httpx honours it, so requests must go through httpx)."""
    return any(k.lower() in _PROXY_VARS and v for k, v in os.environ.items())


Key = tuple[str, str, int]


class LeanHTTP:
    def __init__(self, verify: ssl.SSLContext | bool, connect_timeout: float, timeout: float, idle: int,
                 headers: dict[str, str]):
        self._verify = verify
        self._ctx: ssl.SSLContext | None = None
        self._connect_timeout, self._timeout, self._max_idle = connect_timeout, timeout, idle
        self._headers = headers
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def target(url: str) -> tuple[Key, str] | None:
        """(scheme, host, port) and the request target of ``url``; None when http.client would not
        send it as it is (non-ASCII or spaces: httpx percent-encodes those)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not path.isascii() or " " in path:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return (parts.scheme, parts.hostname, port), path

    def send(self, method: str, url: str, headers: dict[str, str], content: bytes | None,
             hooks: Mapping[str, list[Callable]]) -> httpx.Response | None:
        """The answer, read whole; None when this URL is for httpx to send. ``hooks``: the httpx
        client's event hooks, called with the same Request and Response objects as httpx would (-v
        logging, and tests that record what was sent)."""
        where = self.target(url)
        if where is None:
            return None
        key, path = where
        h = dict(self._headers)
        h.update(headers)
        request = httpx.Request(method, url, headers=h, content=content)
        for hook in hooks.get("request", ()):
            hook(request)
        conn, reused = self._checkout(key)
        try:
            try:
                resp = self._exchange(conn, method, path, h, content)
            except _STALE:
                conn.close()
                if not reused:
                    raise
                conn, reused = self._connect(key), False
                resp = self._exchange(conn, method, path, h, content)
            body = resp.read()
        except BaseException as exc:
            conn.close()
            raise _transport_error(exc, conn) from None
        if resp.will_close:
            conn.close()
        else:
            self._checkin(key, conn)
        out = httpx.Response(resp.status, headers=resp.getheaders(), content=body, request=request)
        for hook in hooks.get("response", ()):
            hook(out)
        return out

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
                  content: bytes | None) -> http.client.HTTPResponse:
        conn.request(method, path, body=content, headers=headers)
        return conn.getresponse()

    def _checkout(self, key: Key) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._connect(key), False

    def _checkin(self, key: Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, key: Key) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self._connect_timeout, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except BaseException as exc:
            conn.close()
            raise _transport_error(exc, conn, connecting=True) from None
        assert conn.sock is not None
        conn.sock.settimeout(self._timeout)  # per read/write from here on, as httpx.Timeout(read=...)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests: no Nagle delay
        return conn

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ctx is None:
                self._ctx = self._verify if isinstance(self._verify, ssl.SSLContext) else \
                    httpx.create_ssl_context(verify=self._verify)
            return self._ctx

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()


def _transport_error(exc: BaseException, conn: http.client.HTTPConnection, connecting: bool = False) -> BaseException:
    """The httpx exception httpcore would have raised for ``exc`` (the client's retry logic reads them)."""
    if not isinstance(exc, (OSError, http.client.HTTPException)):
        return exc  # KeyboardInterrupt and the like go up as they are
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return httpx.ConnectTimeout(text) if connecting else httpx.ReadTimeout(text)
    if connecting or isinstance(exc, ssl.SSLError):
        return httpx.ConnectError(text)
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(text)
    return httpx.ReadError(text)
