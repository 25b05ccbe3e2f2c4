"""Sonatype Nexus 3: where a hosted repository's Docker API lives.

Nexus has no /v2 of its own at the root. A hosted repository is reached by
- path-based routing (default since 3.83): ``nexus.example.com/<hosted-repo>/<image>``: the first
  path component names the repository, and requests go to ``/v2/<hosted-repo>/<image>/...``;
- its repository endpoint ``/repository/<hosted-repo>/v2/<image>/...``: written by a user as
  ``--registry nexus.example.com/repository/<hosted-repo>[/PREFIX]``; the cluster still pulls with
  path-based routing, so images are named ``<hosted-repo>/PREFIX/<image>`` everywhere else;
- a port connector (``nexus.example.com:8082/<image>``): an ordinary registry root.
Pushes work only into hosted repositories (group push is Nexus Pro).
"""

from __future__ import annotations

from airgap.errors import InputError, RegistryError
from airgap.registry.client import RegistryClient, Target


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
