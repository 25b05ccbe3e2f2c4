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

from airgap.errors import InputError
from airgap.registry.client import Target


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
