"""Which kind of registry a target is: ECR by host name, Harbor by its API, Nexus by its status
endpoint, its /repository/<repo>/ path or its challenge; anything else is a generic OCI registry.

Detection only reads, anonymously: a wrong guess costs a warning, never a write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from airgap import limits
from airgap.registry.client import RegistryClient, Target

# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn] (ECR "Private registry" docs)
ECR_HOST_RE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
                         r"\.amazonaws\.com(?:\.cn)?(?::\d+)?$")


@dataclass(frozen=True)
class Detection:
    kind: str
    reason: str


def ecr_host(host: str) -> re.Match[str] | None:
    return ECR_HOST_RE.match(host)


def _get(client: RegistryClient, path: str) -> httpx.Response | None:
    try:
        return client.http.get(client.base + path, timeout=limits.PROBE_TIMEOUT)
    except httpx.HTTPError:
        return None


def detect(target: Target, client: RegistryClient) -> Detection:
    if ecr_host(target.host):
        return Detection("ecr", f"host name {target.host} is an ECR registry")
    if target.prefix.startswith("repository/"):
        return Detection("nexus", "the path starts with /repository/<repo>/ (Nexus repository endpoint)")
    # Harbor: GET /api/v2.0/systeminfo answers anonymously with harbor_version (Harbor swagger).
    resp = _get(client, "/api/v2.0/systeminfo")
    if resp is not None and resp.status_code == 200:
        try:
            version = resp.json().get("harbor_version")
        except (ValueError, AttributeError):
            version = None
        if version:
            return Detection("harbor", f"/api/v2.0/systeminfo answers harbor_version {version}")
    # Nexus 3: GET /service/rest/v1/status answers 200 on a node that can serve reads (Nexus REST docs).
    resp = _get(client, "/service/rest/v1/status")
    if resp is not None and resp.status_code == 200:
        return Detection("nexus", "/service/rest/v1/status answers (Nexus status endpoint)")
    resp = _get(client, "/v2/")
    if resp is not None:
        server = resp.headers.get("server", "")
        challenge = resp.headers.get("www-authenticate", "")
        if server.lower().startswith("nexus") or "nexus" in challenge.lower():
            return Detection("nexus", f"/v2/ answers as Nexus ({server or challenge})")
    return Detection("generic", "no Harbor, ECR or Nexus signature found")
