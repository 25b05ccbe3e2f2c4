"""Verifier configuration for the cluster, written next to the values file when a load was verified.

- ``policy.json`` + ``registries.d/airgap.yaml`` for containers-policy verifiers (CRI-O, podman, skopeo):
  one ``sigstoreSigned`` rule per relocated repository. containers/image checks the signed
  docker-reference, which names the pre-relocation identity, so each rule says which one
  (``exactRepository``). Merge the ``transports.docker`` entries into the node's own policy.
- ``kyverno-policy.yaml``: a Kyverno ClusterPolicy that admits the chart's pods only with images
  signed by the same key (cosign semantics, no transparency log: the cluster is offline).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from airgap.bundle.format import BundleManifest
from airgap.fsutil import atomic_write
from airgap.registry.client import Target
from airgap.sign.keys import PublicKey


def policy_json(manifest: BundleManifest, target: Target, key: PublicKey) -> dict:
    key_data = base64.b64encode(key.pem()).decode()
    docker = {}
    for image in manifest.images:
        docker[f"{target.host}/{target.repository(image.name)}"] = [{
            "type": "sigstoreSigned", "keyData": key_data,
            "signedIdentity": {"type": "exactRepository", "dockerRepository": image.identity}}]
    return {"default": [{"type": "reject"}], "transports": {"docker": docker}}


def registries_d(target: Target) -> dict:
    scope = f"{target.host}/{target.prefix}" if target.prefix else target.host
    return {"docker": {scope: {"use-sigstore-attachments": True}}}


def kyverno_policy(manifest: BundleManifest, target: Target, key: PublicKey) -> dict:
    scope = f"{target.host}/{target.prefix}/*" if target.prefix else f"{target.host}/*"
    return {
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "haystack-rag-signed-images",
                     "annotations": {"airgap/release": manifest.release, "airgap/key": key.fingerprint}},
        "spec": {
            "validationFailureAction": "Enforce", "webhookTimeoutSeconds": 30, "background": False,
            "rules": [{
                "name": "images-signed-by-release-key",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "verifyImages": [{
                    "imageReferences": [scope], "verifyDigest": True, "mutateDigest": True,
                    "attestors": [{"entries": [{"keys": {"publicKeys": key.pem().decode().strip(),
                                                         "rekor": {"ignoreTlog": True},
                                                         "ctlog": {"ignoreSCT": True}}}]}],
                }],
            }],
        },
    }


def write_policies(directory: Path, manifest: BundleManifest, target: Target, key: PublicKey) -> list[Path]:
    out = [directory / "policy.json", directory / "registries.d" / "airgap.yaml", directory / "kyverno-policy.yaml"]
    atomic_write(out[0], json.dumps(policy_json(manifest, target, key), indent=2).encode() + b"\n")
    atomic_write(out[1], yaml.safe_dump(registries_d(target), sort_keys=False).encode())
    atomic_write(out[2], yaml.safe_dump(kyverno_policy(manifest, target, key), sort_keys=False).encode())
    return out
