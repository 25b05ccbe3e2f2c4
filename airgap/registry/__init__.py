"""Talking to OCI distribution registries: credentials, auth challenges, HTTP with retries."""

from airgap.registry.client import RegistryClient, RegistryOptions, Target

__all__ = ["RegistryClient", "RegistryOptions", "Target"]
