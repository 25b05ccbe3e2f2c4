"""Sonatype Nexus 3: where a hosted repository's Docker API lives.

Nexus has no /v2 of its own at the root. A hosted repository is reached by
- path-based routing (default since 3.83): ``nexus.example.com/<hosted-repo>/<image>``: the first
  path component names the repository, and requests go to ``/v2/<hosted-repo>/<image>/...``;
- its repository endpoint ``/repository/<hosted-repo>/v2/<image>/...``: written by a user as
  ``--registry nexus.example.com/repository/<hosted-repo>[/PREFIX]``; the cluster still pulls with
  path-based routing, so images are named ``<hosted-repo>/PREFIX/<image>`` everywhere else;
- a port connector (``nexus.example.com:8082/<image>``): an ordinary registry root.
Pushes work only into hosted repositories (group push is Nexus Pro).

Quirks that change what a load does: no cross-repository mount (a mount request answers 202 and starts
a plain upload), no referrers API (OCI 1.0: signatures and attestations go under the tag schema), an
image index without a top-level mediaType is refused (zarf#2351), and HEAD on a blob may say 200 for a
blob a manifest PUT then calls unknown (nexus-public#264; repaired for every registry in
airgap/places/registry.py).
"""

from __future__ import annotations

import httpx

from airgap import limits
from airgap.errors import InputError, RegistryError
from airgap.model.manifest import Manifest
from airgap.registry.client import RegistryClient, Target
from airgap.targets.base import OpenTarget, TargetKind, index_without_media_type


def route(target: Target) -> tuple[Target, str]:
    """The target as the cluster will name it, and the client's ``api_root`` ("" for none)."""
    parts = target.prefix.split("/")
    if parts[0] != "repository":
        return target, ""
    if len(parts) < 2 or not parts[1]:
        raise InputError(f"registry {target}: name the hosted repository after /repository/ "
                         "(e.g. nexus.example.com/repository/docker-hosted/haystack)")
    hosted = parts[1]
    return Target(target.host, "/".join(parts[1:])), f"/repository/{hosted}"


def tags_immutable(client: RegistryClient, repository: str) -> bool | None:
    """Whether the hosted repository's deployment policy is ALLOW_ONCE or DENY (None: cannot tell; the
    REST API needs an administrator)."""
    hosted = repository.split("/", 1)[0]
    try:
        resp = client.api("GET", f"/service/rest/v1/repositories/docker/hosted/{hosted}", ok=(200,),
                          what=f"settings of Nexus repository {hosted!r}")
        policy = resp.json().get("storage", {}).get("writePolicy", "")
    except (RegistryError, ValueError, AttributeError):
        return None
    return str(policy).upper() in ("ALLOW_ONCE", "DENY")


class Nexus(TargetKind):
    name = "nexus"
    title = "Sonatype Nexus Repository 3"
    order = 30
    mount = False
    referrers = False
    auth_note = "Basic (upper-case BASIC challenge, forceBasicAuth)"

    def detect_name(self, target: Target) -> str | None:
        if target.prefix.startswith("repository/"):
            return "the path starts with /repository/<repo>/ (Nexus repository endpoint)"
        return None

    def detect(self, target: Target, client: RegistryClient) -> str | None:
        # Nexus 3: GET /service/rest/v1/status answers 200 on a node that can serve reads (Nexus REST docs).
        try:
            status = client.http.get(client.base + "/service/rest/v1/status", timeout=limits.PROBE_TIMEOUT)
            if status.status_code == 200:
                return "/service/rest/v1/status answers (Nexus status endpoint)"
            resp = client.http.get(client.base + "/v2/", timeout=limits.PROBE_TIMEOUT)
        except httpx.HTTPError:
            return None
        server = resp.headers.get("server", "")
        challenge = resp.headers.get("www-authenticate", "")
        if server.lower().startswith("nexus") or "nexus" in challenge.lower():
            return f"/v2/ answers as Nexus ({server or challenge})"
        return None

    def route(self, target: Target) -> tuple[Target, str]:
        return route(target)

    def tags_immutable(self, opened: OpenTarget, repository: str) -> bool | None:
        return tags_immutable(opened.client, repository)

    def check_manifest(self, opened: OpenTarget, manifest: Manifest, where: str) -> None:
        if index_without_media_type(manifest):
            raise InputError(f"{where}: its image index has no top-level mediaType, which Nexus refuses "
                             f"(OCI 1.0 only); {opened.target} cannot hold it as it is. Nothing was pushed")


KIND = Nexus()
