"""A repository in an OCI distribution registry as a place (distribution-spec v1.1 push/pull)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from airgap.errors import ManifestBlobUnknown, RegistryError, Transient
from airgap.model import Descriptor, Digest, parse_manifest
from airgap.model.digest import CHUNK
from airgap.model.manifest import MAX_MANIFEST_BYTES, Manifest
from airgap.model.mediatypes import MANIFEST_ACCEPT
from airgap.places.base import BlobBody, Store
from airgap.registry.auth import error_text
from airgap.registry.client import RegistryClient


class RegistryStore(Store):
    # PUT ...?digest= commits an upload only when the bytes hash to that digest (distribution-spec).
    checks_digests_on_write = True

    def __init__(self, client: RegistryClient, repository: str, *, mount: bool = True):
        self.client = client
        self.repository = repository
        # False where the registry cannot mount (Nexus) or mounts only when enabled (ECR): asking
        # would cost a POST and a cancelled upload session per blob.
        self.mount = mount
        self.description = f"{client.host}/{repository}"
        self._pull = f"repository:{repository}:pull"
        self._push = f"repository:{repository}:pull,push"

    @property
    def place_key(self) -> str:
        return f"registry:{self.client.host}"

    def _path(self, kind: str, ref: str = "") -> str:
        return f"{self.client.repo_path(self.repository)}/{kind}/{ref}"

    # -- reading --------------------------------------------------------------------------------
    def fetch_manifest(self, ref: str) -> Manifest:
        what = f"manifest {self.repository}:{ref}"
        with self.client.stream(self._path("manifests", ref), scope=self._pull,
                                headers={"Accept": MANIFEST_ACCEPT}, what=what) as resp:
            body = bytearray()
            try:
                for chunk in resp.iter_bytes(CHUNK):
                    body += chunk
                    # Registries refuse manifests over 4 MiB; a longer answer is not one.
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise RegistryError(f"registry {self.client.host}: {what} is larger than 4 MiB")
            except httpx.TransportError as exc:
                raise self.client.transport_error(exc) from None
            headers = resp.headers
        manifest = parse_manifest(bytes(body), headers.get("content-type", "").split(";")[0].strip(),
                                  where=f"{self.description}@{ref}")
        expected = headers.get("docker-content-digest")
        if ref.startswith("sha256:") and str(manifest.digest) != ref:
            raise RegistryError(f"registry {self.client.host} returned a manifest for {self.repository}@{ref} "
                                f"whose digest is {manifest.digest}")
        if expected and expected.startswith("sha256:") and expected != str(manifest.digest):
            raise RegistryError(f"registry {self.client.host}: manifest {self.repository}:{ref} does not match "
                                f"its Docker-Content-Digest header")
        return manifest

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        with self.client.stream(self._path("blobs", str(desc.digest)), scope=self._pull,
                                what=f"blob {desc.digest.short} of {self.repository}") as resp:
            def chunks() -> Iterator[bytes]:
                try:
                    yield from resp.iter_bytes(CHUNK)
                except httpx.TransportError as exc:
                    raise self.client.transport_error(exc) from None
            yield chunks()

    # -- writing --------------------------------------------------------------------------------
    def blob_exists(self, desc: Descriptor) -> bool:
        resp = self.client.request("HEAD", self._path("blobs", str(desc.digest)), scope=self._pull,
                                   ok=(200, 404), what=f"blob {desc.digest.short} in {self.repository}")
        return resp.status_code == 200

    def manifest_exists(self, digest: Digest) -> bool:
        return self.resolve(str(digest)) is not None

    def resolve_tag(self, tag: str) -> Digest | None:
        return self.resolve(tag)

    def resolve(self, ref: str) -> Digest | None:
        resp = self.client.request("HEAD", self._path("manifests", ref), scope=self._pull,
                                   headers={"Accept": MANIFEST_ACCEPT}, ok=(200, 404),
                                   what=f"manifest {self.repository}:{ref}")
        if resp.status_code == 404:
            return None
        header = resp.headers.get("docker-content-digest")
        if header:
            return Digest.parse(header)
        # Some registries omit the header on HEAD; the body tells.
        return self.fetch_manifest(ref).digest

    def _start_upload(self, params: dict[str, str] | None, scope: str, what: str) -> httpx.Response:
        return self.client.request("POST", self._path("blobs", "uploads/"), scope=scope, params=params,
                                   ok=(201, 202), what=what)

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        if not self.mount or not isinstance(source, RegistryStore) or source.client.host != self.client.host:
            return False
        scope = f"{self._push} repository:{source.repository}:pull"
        resp = self._start_upload({"mount": str(desc.digest), "from": self.client.api_name(source.repository)}, scope,
                                  f"mount of blob {desc.digest.short} into {self.repository}")
        if resp.status_code == 201:
            return True
        # 202: the registry started a normal upload instead (Nexus, or a mount it refused); cancel it
        # so the session does not linger until the registry's upload purger removes it.
        loc = resp.headers.get("location")
        if loc:
            try:
                self.client.request("DELETE", self._location(resp, loc), scope=self._push, ok=(200, 202, 204, 404),
                                    what="cancel upload")
            except RegistryError:
                pass
        return False

    def _location(self, resp: httpx.Response, loc: str) -> str:
        return str(resp.url.join(loc))

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        what = f"upload of blob {desc.digest.short} to {self.repository}"
        resp = self._start_upload(None, self._push, what)
        loc = resp.headers.get("location")
        if not loc:
            raise RegistryError(f"registry {self.client.host}: {what}: no upload Location in the answer")
        # One streaming PATCH then PUT?digest: what Distribution, Harbor, ECR (no chunks under 5 MB) and
        # Nexus all accept. Content-Length is set so no proxy has to buffer a chunked body.
        patch_url = self._location(resp, loc)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        # Credentials only to the registry itself: an upload Location may point at other storage.
        auth = self.client.auth.header_for(self._push) if self.client.same_origin(patch_url) else None
        if auth:
            headers["Authorization"] = auth
        try:
            presp = self.client.http.request("PATCH", patch_url, headers=headers, content=body())
        except httpx.TransportError as exc:
            raise Transient(f"registry {self.client.host}: {what} broke off: {exc}") from None
        if presp.status_code in (401, 403) and auth and self.client.auth.renew(presp):
            # The token expired while we streamed (ECR, 12 h): the engine retries with the new one.
            raise Transient(f"registry {self.client.host}: {what}: credentials expired, renewed")
        if presp.status_code not in (201, 202, 204):
            self.client.raise_for(presp, what)
        put_loc = presp.headers.get("location") or loc
        put_url = str(presp.url.join(put_loc))
        sep = "&" if "?" in put_url else "?"
        self.client.request("PUT", f"{put_url}{sep}digest={desc.digest}", scope=self._push,
                            headers={"Content-Length": "0"}, ok=(201, 204), what=what)

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        ref = tag or str(manifest.digest)
        what = f"push of manifest {self.repository}:{ref}"
        resp = self.client.request("PUT", self._path("manifests", ref), scope=self._push,
                                   headers={"Content-Type": manifest.media_type}, content=manifest.data,
                                   ok=(200, 201, 202, 204, 400, 409, 412), what=what)
        if resp.status_code < 300:
            return
        codes = _error_codes(resp)
        if codes & {"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN"}:
            raise ManifestBlobUnknown(f"registry {self.client.host}: {what}: it lacks content the manifest "
                                      f"references ({error_text(resp)})")
        if tag and (resp.status_code in (409, 412) or codes & {"TAG_INVALID"}
                    or "immutable" in resp.text.lower()):
            # Harbor tag immutability answers 412, ECR IMMUTABLE repositories 400 TAG_INVALID, even
            # when the tag already names this very digest: then there is nothing to do.
            have = self.resolve(tag)
            if have == manifest.digest:
                return
            if have is not None:
                raise RegistryError(f"registry {self.client.host}: tag {self.repository}:{tag} is immutable and "
                                    f"points at {have}, not {manifest.digest} ({error_text(resp)}); "
                                    "push under a new tag or lift the immutability rule")
        self.client.raise_for(resp, what)


def _error_codes(resp: httpx.Response) -> set[str]:
    try:
        return {str(e.get("code", "")).upper() for e in resp.json().get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


__all__ = ["RegistryStore"]
