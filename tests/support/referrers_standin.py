"""The distribution-spec v1.1 referrers API in front of a real Distribution 2.8, which has none.

A stand-in because no registry with the API (Harbor >= 2.8, Zot, Distribution 3) can be installed
here. Written from the distribution-spec ("Listing Referrers", "Pushing Manifests with Subject"), as
strict as it asks:
- a manifest PUT whose body has a ``subject`` is forwarded; when Distribution accepts it, the answer
  carries ``OCI-Subject: <subject digest>`` and the manifest is listed for that subject;
- ``GET /v2/<name>/referrers/<digest>`` answers 200 with an OCI image index (never 404, also for an
  unknown subject) whose entries carry mediaType, digest, size, artifactType (the manifest's, else its
  config's media type) and annotations; ``?artifactType=`` filters and says so in
  ``OCI-Filters-Applied``; a malformed digest is 400;
- everything else goes to Distribution unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import httpx

from http_proxy import HOP, Proxy, Reply, Request

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_REFERRERS = re.compile(r"^/v2/(.+)/referrers/([^/]+)$")
_MANIFEST = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class ReferrersStandIn:
    def __init__(self, registry_host: str):
        self.upstream = f"http://{registry_host}"
        self.http = httpx.Client(timeout=60.0)
        self.listed: dict[tuple[str, str], dict[str, dict]] = {}
        self.queries = 0
        self._lock = threading.Lock()
        self.proxy = Proxy(self.upstream, hook=self.handle)
        self.host = self.proxy.host

    def stop(self) -> None:
        self.proxy.stop()
        self.http.close()

    def handle(self, req: Request) -> Reply | None:
        url = urlsplit(req.path)
        m = _REFERRERS.match(url.path)
        if m:
            return self._referrers(req, m.group(1), m.group(2), parse_qs(url.query))
        m = _MANIFEST.match(url.path)
        if m and req.method == "PUT":
            return self._put_manifest(req, m.group(1))
        return None

    def _referrers(self, req: Request, repo: str, digest: str, query: dict[str, list[str]]) -> Reply:
        if req.method != "GET":
            return Reply(405)
        if not _DIGEST.match(digest):
            return Reply(400, {"Content-Type": "application/json"},
                         b'{"errors":[{"code":"DIGEST_INVALID","message":"invalid digest"}]}')
        with self._lock:
            self.queries += 1
            entries = list(self.listed.get((repo, digest), {}).values())
        headers = {"Content-Type": OCI_INDEX}
        wanted = query.get("artifactType")
        if wanted:
            entries = [e for e in entries if e.get("artifactType") in wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return Reply(200, headers, body)

    def _put_manifest(self, req: Request, repo: str) -> Reply:
        body = req.read_body()
        headers = {k: v for k, v in req.headers.items() if k not in HOP}
        resp = self.http.put(self.upstream + req.path, content=body, headers=headers)
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if resp.status_code == 201 and isinstance(subject, dict) and _DIGEST.match(str(subject.get("digest"))):
            entry = {"mediaType": doc.get("mediaType", ""), "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                     "size": len(body)}
            artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_type:
                entry["artifactType"] = artifact_type
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            with self._lock:
                self.listed.setdefault((repo, subject["digest"]), {})[entry["digest"]] = entry
            out["OCI-Subject"] = subject["digest"]
        return Reply(resp.status_code, out, resp.content)
