"""Fetch an OCI artifact (a model packed by an IMAGES.md ``artifact:`` entry) from the cluster's registry.

The chart runs this as an init container (``model.delivery: initContainer``) in the API image
itself, for clusters whose runtime cannot mount an image volume:

    python -m fetch_artifact REGISTRY/REPOSITORY@sha256:DIGEST /models [--auth-file F] [--ca-file F]

It speaks the OCI distribution API with the standard library only: the manifest (by digest, or by
tag when the values carry none) and every blob are checked against their digests, so what lands in ``/models`` is exactly what was signed
in the bundle. Registry credentials come from a ``dockerconfigjson`` file (the pull secret, mounted),
for Bearer token services (Harbor, Nexus, Distribution with token auth) and Basic auth alike, and are
never sent to another host (a blob redirect to storage gets no Authorization header).

``tar`` artifacts are unpacked (regular files and directories only, no path outside the target);
``files`` artifacts are written one file per layer, named by ``org.opencontainers.image.title``.
A ``.artifact-digest`` file records what was fetched, so a restarted pod does not fetch it again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
TAR_LAYERS = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar")
MAX_MANIFEST = 4 << 20
MARKER = ".artifact-digest"
_REF = re.compile(r"^(?P<host>[^/]+)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
                  r"(?:@(?P<digest>sha256:[a-f0-9]{64})|:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))$")


class FetchError(RuntimeError):
    pass


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping Authorization when the redirect leaves the registry host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class Registry:
    def __init__(self, host: str, repo: str, *, scheme: str = "https", auth: tuple[str, str] | None = None,
                 ca_file: str | None = None):
        self.host, self.repo, self.scheme, self.auth = host, repo, scheme, auth
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _NoRedirectAuth())
        self.authorization: str | None = None

    def get(self, path: str, accept: str | None = None):
        url = f"{self.scheme}://{self.host}/v2/{self.repo}/{path}"
        for attempt in (1, 2):
            req = urllib.request.Request(url)
            if accept:
                req.add_header("Accept", accept)
            if self.authorization:
                req.add_header("Authorization", self.authorization)
            try:
                return self.opener.open(req, timeout=60)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._authenticate(exc.headers.get("WWW-Authenticate", ""))
                    continue
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}") from None
        raise FetchError(f"{url}: still 401 after authenticating: check the pull secret")

    def _authenticate(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        basic = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode() if self.auth else None
        if scheme.lower() == "basic":
            if basic is None:
                raise FetchError(f"{self.host} wants credentials: give --auth-file (the pull secret)")
            self.authorization = basic
            return
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise FetchError(f"{self.host}: unsupported authentication challenge {challenge!r}")
        query = {"scope": fields.get("scope") or f"repository:{self.repo}:pull"}
        if fields.get("service"):
            query["service"] = fields["service"]
        req = urllib.request.Request(fields["realm"] + "?" + urllib.parse.urlencode(query))
        if basic:
            req.add_header("Authorization", basic)  # to the token service the registry itself named, as docker does
        try:
            with self.opener.open(req, timeout=60) as resp:
                doc = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"token service {fields['realm']}: {getattr(exc, 'reason', exc)}") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise FetchError(f"token service {fields['realm']} returned no token")
        self.authorization = f"Bearer {token}"


def credentials(auth_file: str | None, host: str) -> tuple[str, str] | None:
    """The ``host`` entry of a dockerconfigjson file (a Kubernetes pull secret), if any."""
    if not auth_file:
        return None
    doc = json.loads(Path(auth_file).read_text())
    entry = (doc.get("auths") or {}).get(host) or (doc.get("auths") or {}).get(f"https://{host}")
    if not entry:
        return None
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, password
    return entry.get("username", ""), entry.get("password", "")


def _download(reg: Registry, digest: str, size: int, out) -> None:
    sha = hashlib.sha256()
    n = 0
    with reg.get(f"blobs/{digest}") as resp:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
            if n > size:
                raise FetchError(f"blob {digest} is larger than the {size} bytes its manifest says")
            sha.update(chunk)
            out.write(chunk)
    if n != size or f"sha256:{sha.hexdigest()}" != digest:
        raise FetchError(f"blob {digest}: received content does not match its digest")


def _safe_name(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise FetchError(f"artifact member {name!r} would land outside the target directory")
    return str(p)


def fetch(ref: str, dest: Path, *, auth_file: str | None = None, ca_file: str | None = None,
          plain_http: bool = False) -> str:
    m = _REF.match(ref)
    if not m:
        raise FetchError(f"{ref}: expected REGISTRY/REPOSITORY@sha256:DIGEST (or :TAG)")
    host, repo, digest = m.group("host"), m.group("repo"), m.group("digest")
    marker = dest / MARKER
    if digest and marker.is_file() and marker.read_text().strip() == digest:
        return digest
    reg = Registry(host, repo, scheme="http" if plain_http else "https", auth=credentials(auth_file, host),
                   ca_file=ca_file)
    # By digest (what `airgap load --values-out` writes): the content is the content that was signed.
    # By tag: whatever the tag names now, still checked against the digest the registry states.
    with reg.get(f"manifests/{digest or m.group('tag')}", accept=MANIFEST) as resp:
        data = resp.read(MAX_MANIFEST + 1)
        stated = digest or resp.headers.get("Docker-Content-Digest") or ""
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != stated:
        raise FetchError(f"{ref}: the registry's manifest does not match its digest {stated or '(none given)'}")
    digest = stated
    if marker.is_file() and marker.read_text().strip() == digest:
        return digest
    manifest = json.loads(data)
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest))
    try:
        for layer in manifest.get("layers") or []:
            ldigest, size, mt = layer["digest"], int(layer["size"]), layer.get("mediaType", "")
            with tempfile.TemporaryFile(dir=work) as blob:
                _download(reg, ldigest, size, blob)
                blob.seek(0)
                if mt in TAR_LAYERS:
                    with tarfile.open(fileobj=blob, mode="r:*") as tar:
                        for member in tar:
                            name = _safe_name(member.name)
                            if member.isdir():
                                (work / name).mkdir(parents=True, exist_ok=True)
                            elif member.isfile():
                                (work / name).parent.mkdir(parents=True, exist_ok=True)
                                with tar.extractfile(member) as src, open(work / name, "wb") as out:
                                    shutil.copyfileobj(src, out)
                            else:
                                raise FetchError(f"artifact member {member.name!r} is not a file or directory")
                else:
                    name = _safe_name((layer.get("annotations") or {}).get(TITLE, ""))
                    (work / name).parent.mkdir(parents=True, exist_ok=True)
                    with open(work / name, "wb") as out:
                        shutil.copyfileobj(blob, out)
        for entry in sorted(work.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    marker.write_text(digest + "\n")
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fetch_artifact", description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="REGISTRY/REPOSITORY@sha256:DIGEST (or :TAG)")
    parser.add_argument("dest", type=Path, help="directory to unpack into (an emptyDir the app mounts)")
    parser.add_argument("--auth-file", help="dockerconfigjson file with the registry's credentials")
    parser.add_argument("--ca-file", help="CA bundle for the registry's TLS certificate")
    parser.add_argument("--plain-http", action="store_true", help="the registry speaks plain HTTP (tests only)")
    args = parser.parse_args(argv)
    try:
        digest = fetch(args.ref, args.dest, auth_file=args.auth_file, ca_file=args.ca_file,
                       plain_http=args.plain_http)
    except (FetchError, OSError, ValueError, KeyError, tarfile.TarError) as exc:
        print(f"fetch_artifact: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"fetched": args.ref, "digest": digest, "dest": str(args.dest)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
