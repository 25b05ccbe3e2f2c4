"""Blob bytes to and from a plain-HTTP registry, moved by airgap itself instead of httpcore.

Uploads: a verified load's own CPU was a third copying: each 1 MiB chunk read into a new ``bytes``,
then copied into the socket by ``sendall`` through httpx, httpcore and h11. When the body is a byte
range of a local file (:class:`~airgap.model.filebody.FileBody`), :func:`send` sends the request
head with h11 (which still frames the body and checks its length) and each hashed window with
``sendfile``. Downloads (a bundle pulling its layers): httpcore reads a body in 64 KiB pieces, each
an h11 event and a copy, which httpx then joins into 1 MiB chunks (another copy); :func:`fetch`
reads a blob's body with ``recv_into`` straight into whole chunks.

Each such request has a connection of its own, closed after the answer. TLS requests, and every
other request, keep httpx's normal path; these still pass through the httpx client (event hooks,
logging, redirects, the caller's status checks): only how the bytes cross the socket differs.
"""

from __future__ import annotations

import os
import select
import socket

import h11
import httpx

from airgap.model.filebody import CHUNK, FileBody

#: An answer to a blob upload is empty or a short JSON error; anything longer is cut off.
MAX_ANSWER_BYTES = 1 << 20
READ_BYTES = 64 << 10
#: After a send the registry cut off: how long its refusal may take to arrive.
EARLY_ANSWER_TIMEOUT = 5.0


class FileBodyStream(httpx.SyncByteStream):
    """A request body httpx iterates like any other, which the plain-HTTP transport can send with
    ``sendfile`` instead (:func:`send`)."""

    def __init__(self, body: FileBody):
        self.body = body

    def __iter__(self):
        return iter(self.body)


class _Length:
    """What h11 frames as a Data event of ``n`` bytes without holding them (h11's sendfile hook)."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def send(request: httpx.Request, stream: FileBodyStream) -> httpx.Response:
    """One HTTP/1.1 request on a new plain-TCP connection, its body sent with sendfile."""
    timeouts = request.extensions.get("timeout", {})
    sock = _connect(request)
    try:
        conn = h11.Connection(h11.CLIENT)
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(conn.send(_head(request)) or b"")
            windows = stream.body.windows()
            try:
                for fd, offset, length in windows:
                    conn.send_with_data_passthrough(h11.Data(data=_Length(length)))  # type: ignore[arg-type]
                    _sendfile(sock, fd, offset, length, timeouts.get("write"))
            finally:
                windows.close()  # closes the file, also when the send broke off
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The registry may have answered early (a refusal) and closed: that answer is what matters.
            answer = _read_answer(sock, conn, request, EARLY_ANSWER_TIMEOUT, after_failed_send=True)
            if answer is not None:
                return answer
            raise httpx.WriteError(str(exc) or exc.__class__.__name__, request=request) from None
        except socket.timeout as exc:
            raise httpx.WriteTimeout(str(exc) or "write timed out", request=request) from None
        except OSError as exc:
            raise httpx.WriteError(str(exc) or exc.__class__.__name__, request=request) from None
        answer = _read_answer(sock, conn, request, timeouts.get("read"), after_failed_send=False)
        assert answer is not None
        return answer
    finally:
        sock.close()


def _connect(request: httpx.Request) -> socket.socket:
    url, timeouts = request.url, request.extensions.get("timeout", {})
    try:
        sock = socket.create_connection((url.host, url.port or 80), timeout=timeouts.get("connect"))
    except socket.timeout as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from None
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(request: httpx.Request) -> h11.Request:
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
    headers.append((b"Connection", b"close"))  # this connection carries this one request
    return h11.Request(method=request.method, target=request.url.raw_path, headers=headers)


# -- downloads ------------------------------------------------------------------------------------

#: Marks a response whose body comes in CHUNK-sized pieces already (RegistryStore.open_blob reads
#: them as they are instead of re-chunking them through httpx, which copies every byte once more).
WHOLE_CHUNKS = "airgap.whole_chunks"


def is_blob_download(request: httpx.Request) -> bool:
    """A GET of ``/v2/<name>/blobs/<digest>`` (distribution-spec): a body of any size, worth reading
    without httpcore's 64 KiB pieces, their copies and their framing events."""
    return request.method == "GET" and "/blobs/sha" in request.url.path


def fetch(request: httpx.Request) -> httpx.Response:
    """A GET on a new plain-TCP connection whose body, when its length is given, is read with
    ``recv_into`` straight into CHUNK-sized buffers handed on as they fill (h11 parses the head)."""
    timeouts = request.extensions.get("timeout", {})
    sock = _connect(request)
    try:
        conn = h11.Connection(h11.CLIENT)
        sock.settimeout(timeouts.get("write"))
        try:
            sock.sendall(conn.send(_head(request)) or b"")
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
            sock.settimeout(timeouts.get("read"))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(READ_BYTES))
                elif isinstance(event, h11.Response):
                    break
                elif not isinstance(event, h11.InformationalResponse):
                    raise httpx.RemoteProtocolError(f"unexpected {event!r} before the answer", request=request)
        except socket.timeout as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from None
        except (OSError, h11.RemoteProtocolError) as exc:
            raise httpx.ReadError(str(exc) or exc.__class__.__name__, request=request) from None
        headers = list(event.headers.raw_items())
        length = _content_length(headers) if request.method == "GET" else None
        stream = _Body(sock, conn, length, request)
    except BaseException:
        sock.close()
        raise
    extensions: dict[str, object] = {"http_version": b"HTTP/1.1", "reason_phrase": event.reason}
    if length is not None:
        extensions[WHOLE_CHUNKS] = True
    return httpx.Response(event.status_code, headers=headers, stream=stream, request=request, extensions=extensions)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    if any(k.lower() == b"transfer-encoding" for k, _ in headers):
        return None
    values = [v for k, v in headers if k.lower() == b"content-length"]
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else None


class _Body(httpx.SyncByteStream):
    """The answer's body: with a known length, CHUNK-sized ``bytearray`` pieces filled by
    ``recv_into`` (the last one shorter), h11 left behind after the head since the connection
    closes with the answer; otherwise h11's own pieces (chunked encoding, or no length)."""

    def __init__(self, sock: socket.socket, conn: h11.Connection, length: int | None, request: httpx.Request):
        self.sock, self.conn, self.length, self.request = sock, conn, length, request

    def __iter__(self):
        try:
            yield from (self._sized() if self.length is not None else self._framed())
        except socket.timeout as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=self.request) from None
        except (OSError, h11.RemoteProtocolError) as exc:
            raise httpx.ReadError(str(exc) or exc.__class__.__name__, request=self.request) from None

    def _framed(self):
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(READ_BYTES))
            elif isinstance(event, h11.Data):
                yield bytes(event.data)
            else:
                return

    def _sized(self):
        assert self.length is not None
        left = self.length
        held = bytearray()  # what h11 read past the head
        while True:
            event = self.conn.next_event()
            if not isinstance(event, h11.Data):
                break
            held += event.data
        if len(held) > left:
            raise httpx.RemoteProtocolError("more body than Content-Length", request=self.request)
        left -= len(held)
        while held or left:
            buf = bytearray(min(CHUNK, len(held) + left))
            view = memoryview(buf)
            filled = len(held)
            view[:filled] = held
            held = bytearray()
            while filled < len(buf):
                n = self.sock.recv_into(view[filled:])
                if n == 0:
                    raise httpx.RemoteProtocolError(f"the registry closed the connection {left} bytes short of "
                                                    "the announced length", request=self.request)
                filled += n
                left -= n
            view.release()
            yield buf

    def close(self) -> None:
        self.sock.close()


def _sendfile(sock: socket.socket, fd: int, offset: int, length: int, timeout: float | None) -> None:
    """``length`` bytes of ``fd`` from ``offset`` into the socket (non-blocking while it has a
    timeout: wait until it can take more, at most ``timeout`` seconds each time)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    wait_ms = None if timeout is None else int(timeout * 1000)
    while length:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, length)
        except BlockingIOError:
            if not poller.poll(wait_ms):
                raise socket.timeout("write timed out") from None
            continue
        if sent == 0:
            raise OSError(f"the file ended {length} bytes early")
        offset += sent
        length -= sent


def _read_answer(sock: socket.socket, conn: h11.Connection, request: httpx.Request, timeout: float | None,
                 *, after_failed_send: bool) -> httpx.Response | None:
    """The response to our request, read to its end; after a failed send, None when there is none."""
    try:
        sock.settimeout(timeout)
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        reason = b""
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(READ_BYTES)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status, headers, reason = event.status_code, list(event.headers.raw_items()), event.reason
            elif isinstance(event, h11.Data):
                if len(body) + len(event.data) > MAX_ANSWER_BYTES:
                    raise httpx.RemoteProtocolError("the registry's answer to an upload is over 1 MiB",
                                                    request=request)
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if status is None:
            if after_failed_send:
                return None
            raise httpx.RemoteProtocolError("the registry closed the connection without an answer", request=request)
        return httpx.Response(status, headers=headers, content=bytes(body), request=request,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})
    except socket.timeout as exc:
        if after_failed_send:
            return None
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from None
    except (OSError, h11.RemoteProtocolError) as exc:
        if after_failed_send:
            return None
        raise httpx.ReadError(str(exc) or exc.__class__.__name__, request=request) from None
