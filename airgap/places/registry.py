"""A repository in an OCI distribution registry as a place (distribution-spec v1.1 push/pull)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

import httpx

from airgap import limits
from airgap.errors import AirgapError, ManifestBlobUnknown, NotFound, RegistryError
from airgap.model import Descriptor, Digest, parse_manifest
from airgap.model.attachment import COSIGN_TAG, Attachment
from airgap.model.digest import CHUNK
from airgap.model.manifest import MAX_MANIFEST_BYTES, ImageIndex, Manifest
from airgap.model.mediatypes import MANIFEST_ACCEPT, MediaType
from airgap.places.base import BlobBody, StagedBlob, Store
from airgap.registry.auth import error_text
from airgap.registry.client import RegistryClient
from airgap.registry.sendfile import WHOLE_CHUNKS

MAX_REFERRER_PAGES = limits.MAX_REFERRER_PAGES
MONOLITHIC_UPLOAD_BYTES = limits.MONOLITHIC_UPLOAD_BYTES
#: A blob this small is held in memory for its PUT (configs, signatures, small layers): one per upload
#: in flight, so COPY_CONCURRENCY of them at most.
IN_MEMORY_UPLOAD_BYTES = limits.SMALL_BLOB_BYTES

# Whether a registry has the referrers API, asked once per client (every repository shares the answer).
_REFERRERS_API: WeakKeyDictionary[RegistryClient, bool] = WeakKeyDictionary()


class RegistryStore(Store):
    # PUT ...?digest= commits an upload only when the bytes hash to that digest (distribution-spec).
    checks_digests_on_write = True
    remote = True
    # An upload session holds the bytes until PUT ?digest= commits them (distribution-spec).
    stages_blobs = True

    def __init__(self, client: RegistryClient, repository: str, *, mount: bool = True,
                 referrers_api: bool | None = None, tags: dict[str, Digest | None] | None = None):
        self.client = client
        self.repository = repository
        # False where the registry cannot mount (Nexus) or mounts only when enabled (ECR): asking
        # would cost a POST and a cancelled upload session per blob.
        self.mount = mount
        # None: probed on first use (GET .../referrers/<digest>: 200 means the API, 404 means none).
        if referrers_api is not None:
            _REFERRERS_API[client] = referrers_api
        self.description = f"{client.host}/{repository}"
        # The repository's tags, listed once after a first tag lookup missed (a first load, a new
        # release): later lookups of unlisted tags are then answered here. None: not listed (yet, or
        # refused). ``_known`` holds each tag's answer as this command saw or wrote it (None: no such
        # tag): planning, the copy and its tag pushes all ask for the same tags, so each is asked
        # once. ``tags`` shares it between the stores of one repository (airgap/targets/base.py).
        self._tags: set[str] | None = None
        self._listed = False
        self._known: dict[str, Digest | None] = {} if tags is None else tags
        self._pull = f"repository:{repository}:pull"
        self._push = f"repository:{repository}:pull,push"

    @property
    def place_key(self) -> str:
        return f"registry:{self.client.host}"

    @property
    def referrers_api(self) -> bool:  # type: ignore[override]  # a probed capability, not a constant
        known = _REFERRERS_API.get(self.client)
        if known is None:
            probe = Digest("sha256", "0" * 64)
            known = self._referrers_page(self._path("referrers", str(probe))) is not None
            _REFERRERS_API[self.client] = known
        return known

    def _referrers_page(self, url: str) -> tuple[ImageIndex, str | None] | None:
        """One page of a referrers listing and the next page's URL; None when the registry has no API."""
        resp = self.client.request("GET", url, scope=self._pull, headers={"Accept": MediaType.OCI_INDEX},
                                   ok=(200, 400, 404, 405, 501), what=f"referrers listing of {self.repository}")
        if resp.status_code != 200:
            return None  # no such endpoint: Distribution 2.8 answers 404, some proxies 400/405
        if len(resp.content) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"registry {self.client.host}: referrers listing of {self.repository} is over 4 MiB")
        index = parse_manifest(resp.content, MediaType.OCI_INDEX, where=f"{self.description} referrers")
        if not isinstance(index, ImageIndex):
            raise RegistryError(f"registry {self.client.host}: referrers listing of {self.repository} "
                                "is not an image index")
        nxt = resp.links.get("next", {}).get("url")
        return index, (str(resp.url.join(nxt)) if nxt else None)

    def list_referrers(self, subject: Digest) -> list[Descriptor]:
        out: list[Descriptor] = []
        url: str | None = self._path("referrers", str(subject))
        for _ in range(MAX_REFERRER_PAGES):
            if url is None:
                break
            page = self._referrers_page(url)
            if page is None:
                break
            out.extend(page[0].manifests)
            url = page[1]
        return out

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
                    if resp.extensions.get(WHOLE_CHUNKS) and "content-encoding" not in resp.headers:
                        yield from resp.iter_raw()  # CHUNK-sized already: no re-chunking copy
                    else:
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
        if tag in self._known:
            return self._known[tag]
        if self._tags is not None and tag not in self._tags:
            self._known[tag] = None
            return None
        found = self.resolve(tag)
        self._known[tag] = found
        if found is None and not self._listed:
            # A load asks for several tags per repository (the image's, its signatures'), on a first
            # load each a HEAD the registry answers 404; one listing answers the others.
            self._listed = True
            self._tags = self._list_tags()
        return found

    def holds_no_tags(self) -> bool:
        return self._tags is not None and not self._tags

    def note_absent(self) -> None:
        """The registry's catalog does not list this repository: it holds no tag, as an empty
        listing would say, so no tag is asked about (airgap/targets/plan.py)."""
        self._listed = True
        self._tags = set()

    def known_tag(self, tag: str) -> tuple[bool, Digest | None]:
        return (tag in self._known, self._known.get(tag))

    def _list_tags(self) -> set[str] | None:
        from airgap.registry.listing import paged
        try:
            return set(paged(self.client, self._path("tags", "list"), "tags", self._pull))
        except NotFound:
            return set()  # NAME_UNKNOWN: no such repository yet, or one without tags (Distribution)
        except (RegistryError, ValueError, AttributeError):
            return None  # a refused or odd listing: ask tag by tag, as without it

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
        if not self.mount or not self.same_place(source) or not source.repository:
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
            _Upload(self, self._location(resp, loc), f"mount of blob {desc.digest.short}").cancel()
        return False

    def _location(self, resp: httpx.Response, loc: str) -> str:
        # An upload Location is an absolute URL (Distribution) or an absolute path (Harbor, ECR): both
        # are resolved without URL parsing, which costs more than the rest of a small request's work.
        if loc.startswith(("http://", "https://")):
            return loc
        if loc.startswith("/") and not loc.startswith("//"):
            return f"{resp.url.scheme}://{resp.url.netloc.decode('ascii')}{loc}"
        return str(resp.url.join(loc))

    def _open_upload(self, what: str) -> str:
        resp = self._start_upload(None, self._push, what)
        loc = resp.headers.get("location")
        if not loc:
            raise RegistryError(f"registry {self.client.host}: {what}: no upload Location in the answer")
        return self._location(resp, loc)

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        if desc.size > MONOLITHIC_UPLOAD_BYTES:
            self.stage_blob(desc, body).commit()
            return
        # A small blob in one PUT ?digest= with its body (every registry we target accepts it): one
        # round trip fewer than PATCH + PUT, which is most of the cost of a small image.
        what = f"upload of blob {desc.digest.short} to {self.repository}"
        url = self._open_upload(what)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        if desc.size <= IN_MEMORY_UPLOAD_BYTES:
            # Read whole (and so checked whole) first: sent as a small request, on a kept-alive
            # connection without httpx's per-request cost (airgap/registry/lean.py), and resent as it is
            # if the registry answers 5xx.
            data = bytearray()
            for chunk in body():
                data += chunk  # copied as it comes: a body may hand out views of one reused buffer
            self.client.request("PUT", _with_digest(url, desc.digest), scope=self._push, headers=headers,
                                content=bytes(data), ok=(201, 204), what=what)
            return
        resp = self.client.upload("PUT", _with_digest(url, desc.digest), scope=self._push, headers=headers,
                                  body=body(), what=what)
        if resp.status_code not in (201, 204):
            self.client.raise_for(resp, what, self._push)

    def stage_blob(self, desc: Descriptor, body: BlobBody) -> StagedBlob:
        """POST, then one streaming PATCH (what Distribution, Harbor, ECR, which wants no chunks under
        5 MB, and Nexus all accept); ``PUT ?digest=`` is left to :meth:`_Upload.commit`. Content-Length
        is set so no proxy has to buffer a chunked body."""
        what = f"upload of blob {desc.digest.short} to {self.repository}"
        url = self._open_upload(what)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        try:
            presp = self.client.upload("PATCH", url, scope=self._push, headers=headers, body=body(), what=what)
            if presp.status_code not in (201, 202, 204):
                self.client.raise_for(presp, what, self._push)
        except BaseException:
            # The body failed its digest, or the registry refused it: drop the session now rather
            # than leave it until the registry's upload purger removes it.
            _Upload(self, url, what).cancel()
            raise
        put_loc = presp.headers.get("location")
        return _Upload(self, str(presp.url.join(put_loc)) if put_loc else url, what, desc.digest)

    def push_attachment(self, manifest: Manifest, att: Attachment) -> bool:
        if att.found_by == COSIGN_TAG:
            self.put_manifest(manifest, att.tag)
            return False
        resp = self._put(manifest, None)
        # distribution-spec: a registry that indexed the subject says so with OCI-Subject; without
        # it the client keeps the tag-schema index itself (Distribution 2.8, Nexus).
        if resp is None or "oci-subject" not in resp.headers:
            return self.tag_schema
        _REFERRERS_API.setdefault(self.client, True)
        return False

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        self._put(manifest, tag)

    def _put(self, manifest: Manifest, tag: str | None) -> httpx.Response | None:
        ref = tag or str(manifest.digest)
        what = f"push of manifest {self.repository}:{ref}"
        if tag:
            self._known.pop(tag, None)  # a failed write forgets the tag: the next question asks the registry
        resp = self.client.request("PUT", self._path("manifests", ref), scope=self._push,
                                   headers={"Content-Type": manifest.media_type}, content=manifest.data,
                                   ok=(200, 201, 202, 204, 400, 409, 412), what=what)
        if resp.status_code < 300:
            if tag:
                self._known[tag] = manifest.digest
            return resp
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
                return None
            if have is not None:
                raise RegistryError(f"registry {self.client.host}: tag {self.repository}:{tag} is immutable and "
                                    f"points at {have}, not {manifest.digest} ({error_text(resp)}); "
                                    "push under a new tag or lift the immutability rule")
        self.client.raise_for(resp, what, self._push)
        return None  # raise_for raised


class _Upload(StagedBlob):
    """An upload session whose bytes are all sent: PUT ?digest= commits it, DELETE drops it."""

    def __init__(self, store: RegistryStore, url: str, what: str, digest: Digest | None = None):
        self.store, self.url, self.what, self.digest = store, url, what, digest

    def commit(self) -> None:
        assert self.digest is not None
        self.store.client.request("PUT", _with_digest(self.url, self.digest), scope=self.store._push,
                                  headers={"Content-Length": "0"}, ok=(201, 204), what=self.what)

    def cancel(self) -> None:
        try:
            self.store.client.request("DELETE", self.url, scope=self.store._push, ok=(200, 202, 204, 404),
                                      what=f"cancel of the {self.what}")
        except AirgapError:
            pass  # best effort: the registry purges stale sessions itself


def _with_digest(url: str, digest: Digest) -> str:
    return f"{url}{'&' if '?' in url else '?'}digest={digest}"


def _error_codes(resp: httpx.Response) -> set[str]:
    try:
        return {str(e.get("code", "")).upper() for e in resp.json().get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


__all__ = ["RegistryStore"]
