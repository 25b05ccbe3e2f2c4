"""Verifier configuration for the cluster, written next to the values file when a load was verified.

- ``policy.json`` + ``registries.d/airgap.yaml`` for containers-policy verifiers (CRI-O, podman, skopeo):
  one ``sigstoreSigned`` rule per name an image is pulled by: its private repository and, for a mirrored
  image, its upstream repository (pulled through registries.conf mirrors). containers/image checks the
  signed docker-reference, which names the pre-relocation identity, so each rule says which one
  (``exactRepository``). A complete node policy: default reject, the private prefix rejects what
  is not listed.
- ``kyverno-policy.yaml``: a Kyverno ClusterPolicy that admits pods only with images signed by the same
  key (cosign semantics, no transparency log: the cluster is offline), by private and upstream name.
"""

from __future__ import annotations

import base64
import json

import yaml

from airgap.bundle.format import BundleManifest
from airgap.emit.mapping import DEFAULT_NAMING, ImageMapping, mappings
from airgap.registry.client import Target
from airgap.sign.keys import PublicKey


def _covered(maps: list[ImageMapping]) -> list[tuple[str, ImageMapping]]:
    """(repository as a node names it, mapping): every private name, and every upstream name."""
    out: list[tuple[str, ImageMapping]] = []
    for m in maps:
        out.append((m.destination, m))
        if m.upstream and m.upstream != m.destination:
            out.append((m.upstream, m))
    return out


def policy_json(maps: list[ImageMapping], target: Target, key: PublicKey) -> dict:
    """A complete node policy (install it as /etc/containers/policy.json).

    Every name an image can be pulled by, private and upstream, has its own ``sigstoreSigned`` rule; the
    private prefix rejects anything else; the default rejects everything not named. Because
    containers/image uses the most specific scope, merging these ``transports.docker`` entries into a
    policy whose default accepts still cannot let an unsigned image through under a name listed here.
    """
    key_data = base64.b64encode(key.pem()).decode()
    docker: dict[str, list[dict]] = {}
    for name, m in _covered(maps):
        docker[name] = [{"type": "sigstoreSigned", "keyData": key_data,
                         "signedIdentity": {"type": "exactRepository", "dockerRepository": m.identity}}]
    scope = f"{target.host}/{target.prefix}" if target.prefix else target.host
    docker.setdefault(scope, [{"type": "reject"}])
    return {"default": [{"type": "reject"}], "transports": {"docker": docker}}


def registries_d(maps: list[ImageMapping], target: Target) -> dict:
    """Signatures are read as sigstore attachments for the private names and the upstream ones (a pull by
    upstream name through a mirror looks them up under the name asked for)."""
    scope = f"{target.host}/{target.prefix}" if target.prefix else target.host
    docker = {scope: {"use-sigstore-attachments": True}}
    for m in maps:
        if m.upstream:
            docker[m.upstream] = {"use-sigstore-attachments": True}
    return {"docker": docker}


def _patterns(repository: str) -> list[str]:
    return [f"{repository}:*", f"{repository}@*"]


def kyverno_policy(manifest: BundleManifest, maps: list[ImageMapping], target: Target, key: PublicKey) -> dict:
    """Kyverno >= 1.13 fields: per-rule ``failureAction`` and ``webhookConfiguration.timeoutSeconds``
    (the spec-level ``validationFailureAction`` and ``webhookTimeoutSeconds`` are deprecated)."""
    scope = f"{target.host}/{target.prefix}/*" if target.prefix else f"{target.host}/*"
    attestors = [{"entries": [{"keys": {"publicKeys": key.pem().decode().strip(),
                                        "rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}}]}]
    verify = [{"imageReferences": [scope], "failureAction": "Enforce", "verifyDigest": True, "mutateDigest": True,
               "attestors": attestors}]
    for m in maps:
        if m.upstream and m.upstream != m.destination:
            # A pod naming the upstream image: its signature is where it was loaded to (``repository``).
            verify.append({"imageReferences": _patterns(m.upstream), "repository": m.destination,
                           "failureAction": "Enforce", "verifyDigest": False, "mutateDigest": False,
                           "attestors": attestors})
    return {
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "haystack-rag-signed-images",
                     "annotations": {"airgap/release": manifest.release, "airgap/key": key.fingerprint}},
        "spec": {
            "background": False,
            "webhookConfiguration": {"timeoutSeconds": 30},
            "rules": [{
                "name": "images-signed-by-release-key",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "verifyImages": verify,
            }],
        },
    }


def render_policies(manifest: BundleManifest, target: Target, key: PublicKey,
                    naming: str = DEFAULT_NAMING) -> dict[str, bytes]:
    maps = mappings(manifest, target, naming)
    return {
        "policy.json": json.dumps(policy_json(maps, target, key), indent=2).encode() + b"\n",
        "registries.d/airgap.yaml": yaml.safe_dump(registries_d(maps, target), sort_keys=False).encode(),
        "kyverno-policy.yaml": yaml.safe_dump(kyverno_policy(manifest, maps, target, key), sort_keys=False).encode(),
    }

