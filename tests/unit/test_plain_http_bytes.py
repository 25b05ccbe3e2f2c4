"""Blob bytes on plain HTTP, where airgap moves them itself (airgap/registry/sendfile.py).

Uploads: a blob read from a byte range of a local file (a bundle member), as chunks or as sendfile
windows, is checked before its last piece is handed on, and an upload the registry refuses half-way
reports the registry's answer, not a broken pipe. Downloads: a blob GET is read straight into whole
chunks, byte for byte, and a body cut short is an error, never a short blob."""

from __future__ import annotations

import os
import socket
import threading

import httpx
import pytest

from airgap.errors import DigestMismatch, RegistryError, Transient
from airgap.model import Descriptor, sha256_digest
from airgap.model.filebody import CHUNK, SEND_WINDOW, FileBody, FileRange
from airgap.places.registry import RegistryStore
from airgap.registry.client import RegistryClient, RegistryOptions

PREFIX, SUFFIX = b"p" * 700, b"s" * 300  # a member sits between other bytes of the tar


def _member(tmp_path, data: bytes) -> FileRange:
    path = tmp_path / "bundle.tar"
    path.write_bytes(PREFIX + data + SUFFIX)
    return FileRange(path, len(PREFIX), len(data))


def _window_bytes(body: FileBody) -> list[bytes]:
    return [os.pread(fd, n, off) for fd, off, n in body.windows()]


def test_chunks_and_windows_give_the_member_exactly(tmp_path):
    data = os.urandom(SEND_WINDOW + 2 * CHUNK + 12345)
    where = _member(tmp_path, data)
    seen: list[int] = []
    assert b"".join(FileBody(where, sha256_digest(data), "blob", progress=seen.append)) == data
    assert sum(seen) == len(data)
    assert b"".join(_window_bytes(FileBody(where, sha256_digest(data), "blob"))) == data
    assert b"".join(_window_bytes(FileBody(where, sha256_digest(data), "blob", rehash=False))) == data


@pytest.mark.parametrize("as_windows", [False, True])
def test_a_damaged_member_is_refused_before_its_last_piece_is_handed_on(tmp_path, as_windows):
    data = bytearray(os.urandom(3 * SEND_WINDOW))
    expected = sha256_digest(bytes(data))
    data[-5] ^= 1  # in the last piece: a consumer committing on the last one must never see it
    body = FileBody(_member(tmp_path, bytes(data)), expected, "blob x")
    got: list[object] = []
    with pytest.raises(DigestMismatch, match="blob x"):
        for piece in (body.windows() if as_windows else body):
            got.append(piece)
    assert len(got) == len(data) // (SEND_WINDOW if as_windows else CHUNK) - 1  # all but the last


@pytest.mark.parametrize("rehash", [True, False])
def test_a_member_cut_short_is_refused(tmp_path, rehash):
    data = os.urandom(CHUNK + 10)
    where = _member(tmp_path, data)
    with open(where.path, "r+b") as fh:
        fh.truncate(len(PREFIX) + CHUNK)  # the bundle file ends inside the member
    with pytest.raises(DigestMismatch, match="truncated"):
        _window_bytes(FileBody(where, sha256_digest(data), "blob", rehash=rehash))
    with pytest.raises(DigestMismatch, match="truncated"):
        b"".join(FileBody(where, sha256_digest(data), "blob", rehash=rehash))


def _answering_server(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    """Sends ``answer`` as soon as the first request's head arrived, and closes without reading on."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread


def test_a_plain_http_upload_refused_half_way_reports_the_registrys_answer(tmp_path):
    size = 64 << 20  # far more than the socket buffers hold: the send breaks off
    path = tmp_path / "big.tar"
    with open(path, "wb") as fh:
        fh.truncate(size)  # sparse: no disk, same bytes as zeros
    digest = sha256_digest(b"\0" * size)
    # 413 as soon as the head arrived, closing without reading the body (what a registry does with
    # a body over its limit, or a token that expired)
    error = b'{"errors":[{"code":"SIZE_INVALID","message":"blob too large"}]}'
    srv, thread = _answering_server(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: " + str(len(error)).encode() + b"\r\n\r\n" + error)
    host = f"127.0.0.1:{srv.getsockname()[1]}"
    client = RegistryClient(host, RegistryOptions(insecure=True, retries=1))
    try:
        body = FileBody(FileRange(path, 0, size), digest, "blob")
        resp = client.upload("PATCH", f"http://{host}/v2/a/blobs/uploads/1", scope="",
                             headers={"Content-Length": str(size)}, body=body, what="upload")
        assert resp.status_code == 413
        with pytest.raises(RegistryError, match="blob too large"):
            client.raise_for(resp, "upload")
    finally:
        client.close()
        srv.close()
        thread.join(5)


def test_a_plain_http_upload_of_a_member_lands_whole_in_a_real_registry(tmp_path, registry):
    """Through the sendfile path (a ``--insecure-registry`` client), seen by the client's own event
    hooks like any request, committed under its digest, read back byte for byte."""
    data = os.urandom(5 * CHUNK + 7)
    desc = Descriptor("application/octet-stream", sha256_digest(data), len(data))
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    methods: list[str] = []
    client.http.event_hooks["request"].append(lambda req: methods.append(req.method))
    try:
        store = RegistryStore(client, "sendfile/a")
        where = _member(tmp_path, data)
        store.stage_blob(desc, lambda: FileBody(where, desc.digest, "blob")).commit()
        assert methods == ["POST", "PATCH", "PUT"]
        with store.open_blob(desc) as chunks:
            assert b"".join(chunks) == data
    finally:
        client.close()


def test_a_damaged_member_leaves_no_blob_in_a_real_registry(tmp_path, registry):
    data = bytearray(os.urandom(5 * CHUNK))
    desc = Descriptor("application/octet-stream", sha256_digest(bytes(data)), len(data))
    data[-1] ^= 1
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, "sendfile/b")
        where = _member(tmp_path, bytes(data))
        with pytest.raises(DigestMismatch):
            store.stage_blob(desc, lambda: FileBody(where, desc.digest, "blob"))
        assert not store.blob_exists(desc)
    finally:
        client.close()


def test_tls_and_mocked_transports_read_the_member_as_chunks(tmp_path):
    """Any transport but the plain-HTTP one iterates the body: the same bytes, the same checks."""
    data = os.urandom(CHUNK + 3)
    got: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        got.append(req.read())
        return httpx.Response(202)

    client = RegistryClient("reg.example:5000", RegistryOptions(), transport=httpx.MockTransport(handler))
    body = FileBody(_member(tmp_path, data), sha256_digest(data), "blob")
    resp = client.upload("PATCH", "https://reg.example:5000/v2/a/blobs/uploads/1", scope="",
                         headers={"Content-Length": str(len(data))}, body=body, what="upload")
    assert resp.status_code == 202 and got == [data]


def _download(answer: bytes, digest_of: bytes) -> list[bytes]:
    srv, thread = _answering_server(answer)
    client = RegistryClient(f"127.0.0.1:{srv.getsockname()[1]}", RegistryOptions(insecure=True, retries=1))
    try:
        desc = Descriptor("application/octet-stream", sha256_digest(digest_of), len(digest_of))
        with RegistryStore(client, "a").open_blob(desc) as chunks:
            return list(chunks)
    finally:
        client.close()
        srv.close()
        thread.join(5)


def test_a_blob_download_comes_in_whole_chunks_byte_for_byte(tmp_path, registry):
    data = os.urandom(3 * CHUNK + 99)
    desc = Descriptor("application/octet-stream", sha256_digest(data), len(data))
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, "download/a")
        store.put_blob(desc, lambda: FileBody(_member(tmp_path, data), desc.digest, "blob"))
        with store.open_blob(desc) as chunks:
            pieces = list(chunks)
    finally:
        client.close()
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [CHUNK, CHUNK, CHUNK, 99]


def test_a_download_cut_short_is_an_error_not_a_short_blob():
    data = os.urandom(1000)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + data  # then the connection closes
    with pytest.raises(Transient, match="short"):
        _download(answer, data)


def test_a_chunked_download_is_read_through_its_framing():
    data = os.urandom(70000)
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 40000 + data[:40000]
              + b"\r\n" + b"%x\r\n" % 30000 + data[40000:] + b"\r\n0\r\n\r\n")
    assert b"".join(_download(answer, data)) == data
