"""Signing and verification, compatible with cosign's key-based formats.

- :mod:`airgap.sign.keys`     cosign key pairs: generate, encrypt, load (both PEM labels)
- :mod:`airgap.sign.cosign`   image signatures: simple-signing payloads in ``sha256-<hex>.sig`` manifests
- :mod:`airgap.sign.blob`     ``cosign sign-blob``-compatible signatures over bytes (the bundle manifest)
- :mod:`airgap.sign.policy`   verifier configuration for the cluster: policy.json, Kyverno policy
"""
