"""A small threaded reverse proxy for stand-ins: forwards to a real server, with a hook that may
answer a request itself (Harbor's API and immutability, ECR's token expiry) before it is forwarded.

Bodies stream through in both directions' natural sizes (request bodies are forwarded as they are
read; responses are read whole, which is fine for test-sized blobs). Serves on a free 127.0.0.1
port in a daemon thread; ``stop()`` shuts it down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
       "proxy-authenticate", "content-length", "host"}


@dataclass
class Request:
    method: str
    path: str                  # with query
    headers: dict[str, str]    # lower-case names
    body: bytes | None = None  # read only when a hook asks for it (read_body)
    _reader: Callable[[], bytes] | None = field(default=None, repr=False)

    def read_body(self) -> bytes:
        if self.body is None:
            self.body = self._reader() if self._reader else b""
        return self.body


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Hook = Callable[[Request], Reply | None]


class Proxy:
    def __init__(self, upstream: str, hook: Hook | None = None, after: Callable[[Request, httpx.Response], None] | None = None):
        self.upstream = upstream.rstrip("/")
        self.hook = hook
        self.after = after
        self.client = httpx.Client(timeout=120.0, follow_redirects=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                chunked = "chunked" in (self.headers.get("transfer-encoding") or "").lower()

                def stream() -> Iterator[bytes]:
                    left = length
                    while left > 0:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                        yield chunk

                def read_all() -> bytes:
                    if chunked:
                        out = b""
                        while True:
                            size = int(self.rfile.readline().strip() or b"0", 16)
                            if size == 0:
                                self.rfile.readline()
                                return out
                            out += self.rfile.read(size)
                            self.rfile.readline()
                    return b"".join(stream())

                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              _reader=read_all)
                reply = proxy.hook(req) if proxy.hook else None
                if reply is not None:
                    if req.body is None:
                        req.read_body()  # drain, so the connection stays usable
                    self._send(reply.status, reply.headers, reply.body)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP - {"host"}}
                content = req.body if req.body is not None else (read_all() if chunked else
                                                                 (stream() if length else None))
                if length and req.body is None and not chunked:
                    headers["Content-Length"] = str(length)
                resp = proxy.client.request(self.command, proxy.upstream + self.path, headers=headers,
                                            content=content)
                if proxy.after:
                    proxy.after(req, resp)
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
                self._send(resp.status_code, out, resp.content if self.command != "HEAD" else b"",
                           head_length=resp.headers.get("content-length"))

            def _send(self, status: int, headers: dict[str, str], body: bytes, head_length: str | None = None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", head_length if self.command == "HEAD" and head_length
                                 else str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
