"""Protocol edge cases of the registry client, driven through httpx.MockTransport.

These answers (upper-case challenges, Retry-After, token services) come from real registries'
documented behaviour (../shared/REGISTRIES.md); the end-to-end tests use the real Distribution.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from airgap.errors import AuthError, NotFound, RegistryError
from airgap.model import Descriptor, Digest, sha256_digest
from airgap.places.registry import RegistryStore
from airgap.registry.auth import parse_challenge
from airgap.registry.client import RegistryClient, RegistryOptions, Target, is_loopback

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "a" * 64, "size": 2},
                       "layers": []}).encode()


def _client(handler, **opts) -> RegistryClient:
    opts.setdefault("backoff", 0.001)
    return RegistryClient("reg.example:5000", RegistryOptions(**opts), transport=httpx.MockTransport(handler))


def test_challenge_parsing_is_case_insensitive():
    ch = parse_challenge('BASIC realm="Sonatype Nexus Repository Manager"')
    assert ch.scheme == "basic" and ch.params["realm"] == "Sonatype Nexus Repository Manager"
    ch = parse_challenge('Bearer realm="https://h/service/token",service="harbor-registry",'
                         'scope="repository:p/a:pull,push"')
    assert ch.scheme == "bearer" and ch.params["scope"] == "repository:p/a:pull,push"


def test_nexus_upper_case_basic_challenge_gets_credentials():
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers.get("authorization"))
        if not req.headers.get("authorization"):
            return httpx.Response(401, headers={"WWW-Authenticate": 'BASIC realm="Sonatype Nexus"'})
        assert req.headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
        return httpx.Response(200, content=MANIFEST, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    store = RegistryStore(_client(handler, username="u", password="p"), "hosted/app")
    store.fetch_manifest("1.0")
    store.fetch_manifest("1.0")
    # one challenge, then credentials sent up front
    assert seen == [None, seen[1], seen[1]] and seen[1].startswith("Basic ")


def test_bearer_token_is_fetched_per_scope_and_reused():
    tokens = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/service/token":
            scope = req.url.params.get_list("scope")
            assert req.url.params["service"] == "harbor-registry"
            tokens.append(scope)
            return httpx.Response(200, json={"token": f"tok-{len(tokens)}", "expires_in": 300})
        if req.headers.get("authorization", "").startswith("Bearer tok-"):
            return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "b" * 64})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://reg.example:5000/service/token",'
                                            'service="harbor-registry",scope="repository:p/a:pull"'})

    store = RegistryStore(_client(handler), "p/a")
    assert store.resolve_tag("1") == Digest("sha256", "b" * 64)
    assert store.resolve_tag("2") == Digest("sha256", "b" * 64)
    assert tokens == [["repository:p/a:pull"]]  # one token, reused for the second request
    other = RegistryStore(store.client, "p/b")
    other.resolve_tag("1")
    assert tokens[-1] == ["repository:p/b:pull"]  # new scope fetched up front, no extra 401


def test_refused_token_names_the_registry_and_user_not_the_password():
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/token":
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://reg.example:5000/token"'})

    store = RegistryStore(_client(handler, username="robot$proj+ci", password="s3cr3t-pw"), "proj/app")
    with pytest.raises(AuthError) as exc:
        store.resolve_tag("1")
    assert "reg.example:5000" in str(exc.value) and "robot$proj+ci" in str(exc.value)
    assert "invalid credentials" in str(exc.value) and "s3cr3t-pw" not in str(exc.value)


def test_retry_after_and_5xx_are_retried():
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(404)

    store = RegistryStore(_client(handler), "a")
    assert store.blob_exists(Descriptor("x", Digest("sha256", "c" * 64), 1)) is False
    assert calls == ["HEAD", "HEAD", "HEAD"]


def test_persistent_5xx_gives_up_with_the_registry_message():
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": "disk full"}]})

    store = RegistryStore(_client(handler, retries=3), "a")
    with pytest.raises(RegistryError, match="disk full"):
        store.fetch_manifest("1")


def test_credentials_never_travel_in_clear_text_to_a_remote_host():
    def handler(req: httpx.Request) -> httpx.Response:
        assert "authorization" not in req.headers
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    store = RegistryStore(_client(handler, insecure=True, username="u", password="p"), "a")
    with pytest.raises(AuthError, match="plain HTTP"):
        store.fetch_manifest("1")


def test_mount_falls_back_when_the_registry_starts_an_upload_instead():
    """Nexus answers a mount request with 202 and an upload session; we cancel it and upload."""
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append((req.method, req.url.path, dict(req.url.params)))
        if req.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/b/blobs/uploads/uuid-1"})
        return httpx.Response(204)

    client = _client(handler)
    src, dst = RegistryStore(client, "a"), RegistryStore(client, "b")
    desc = Descriptor("x", sha256_digest(b"hi"), 2)
    assert dst.mount_blob(desc, src) is False
    assert calls[0][2] == {"mount": str(desc.digest), "from": "a"}
    assert calls[1][0] == "DELETE"


def test_manifest_with_wrong_digest_is_refused():
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MANIFEST, headers={"Docker-Content-Digest": "sha256:" + "d" * 64})

    store = RegistryStore(_client(handler), "a")
    with pytest.raises(RegistryError, match="does not match"):
        store.fetch_manifest("1.0")
    with pytest.raises(NotFound):
        RegistryStore(_client(lambda r: httpx.Response(404)), "a").fetch_manifest("1.0")


def test_targets_and_loopback():
    t = Target.parse("https://harbor.example.com/haystack/prod")
    assert (t.host, t.prefix, t.repository("opensearch")) == ("harbor.example.com", "haystack/prod",
                                                              "haystack/prod/opensearch")
    assert Target.parse("10.0.0.5:5000").repository("x") == "x"
    with pytest.raises(Exception, match="prefix"):
        Target.parse("reg.example/Bad_Prefix!")
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:1") and not is_loopback("10.1.1.1:5000")


def test_upload_broken_off_midway_is_retried_from_a_fresh_stream(tmp_path):
    """A connection reset during the streamed PATCH: the engine re-opens the blob and starts over."""
    from airgap.copy import CopyEngine, CopyJob
    from airgap.places.layout import LayoutStore
    from synth import LayerSpec, add_image

    layout = tmp_path / "l"
    add_image(layout, "x", layers=[LayerSpec(size=6 << 20, seed=5)])  # over MONOLITHIC_UPLOAD_BYTES
    patches = {"n": 0, "bytes": []}
    put_bodies: list[int] = []
    blobs: set[str] = set()

    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if req.method == "HEAD":
            return httpx.Response(200 if path.rsplit("/", 1)[1] in blobs else 404)
        if req.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/x/blobs/uploads/u1"})
        if req.method == "PATCH":
            patches["n"] += 1
            body = req.read()
            if patches["n"] == 1:
                raise httpx.RemoteProtocolError("connection reset by peer")
            patches["bytes"].append(len(body))
            return httpx.Response(202, headers={"Location": "/v2/x/blobs/uploads/u1"})
        if req.method == "PUT" and "/blobs/" in path:
            put_bodies.append(len(req.read()))
            blobs.add(req.url.params["digest"])
            return httpx.Response(201)
        if req.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(404)

    dst = RegistryStore(_client(handler), "x")
    report = CopyEngine(concurrency=1).copy([CopyJob("x", LayoutStore(layout), "x", dst, ["1"])])
    assert patches["n"] == 2  # the broken layer upload and its retry; the small config goes in one PUT
    assert max(patches["bytes"]) > 6 << 20  # the retried layer went through whole
    assert min(put_bodies) == 0 and max(put_bodies) > 0  # config: PUT with body; layer: PATCH, PUT
    assert report.blobs_uploaded == 2 and len(blobs) == 2


def test_credentials_never_go_to_a_plain_http_token_realm_or_a_foreign_upload_location():
    """A TLS registry whose challenge names an http:// token service, and one whose upload Location
    points at another host: neither gets the user's credentials."""
    sent = []

    def realm_handler(req: httpx.Request) -> httpx.Response:
        sent.append((str(req.url), req.headers.get("authorization")))
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://tokens.example/token"'})

    store = RegistryStore(_client(realm_handler, username="u", password="hunter2"), "a")
    with pytest.raises(AuthError, match="plain HTTP"):
        store.resolve_tag("1")
    assert all("tokens.example" not in url for url, _ in sent)

    def location_handler(req: httpx.Request) -> httpx.Response:
        sent.append((str(req.url), req.headers.get("authorization")))
        if req.method == "POST":
            return httpx.Response(202, headers={"Location": "https://storage.example/upload/1"})
        if req.method == "PATCH":
            req.read()
            return httpx.Response(202, headers={"Location": "https://storage.example/upload/1"})
        return httpx.Response(201)

    sent.clear()
    client = RegistryClient("reg.example:5000", RegistryOptions(username="u", password="hunter2", backoff=0.001),
                            transport=httpx.MockTransport(location_handler))
    client.auth.on_challenge('Basic realm="r"', "", False)  # the registry asked for Basic before
    data = b"x" * 10
    RegistryStore(client, "a").put_blob(Descriptor("x", sha256_digest(data), 10), lambda: iter([data]))
    to_storage = [auth for url, auth in sent if "storage.example" in url]
    assert to_storage and all(a is None for a in to_storage)
    assert any(a for url, a in sent if "reg.example" in url)


def test_userinfo_in_the_registry_address_is_refused_without_echoing_it():
    with pytest.raises(Exception) as exc:
        Target.parse("user:hunter2@registry.example.com/p")
    assert "hunter2" not in str(exc.value) and "--password-stdin" in str(exc.value)
    for bad in ("127.0.0.1:abc", "a..b", "[::1"):
        with pytest.raises(Exception, match="expected HOST"):
            Target.parse(bad)
