"""Paged listings of the distribution-spec: the catalog and a repository's tags."""

from __future__ import annotations

from airgap.registry.client import RegistryClient


def paged(client: RegistryClient, path: str, key: str, scope: str) -> list[str]:
    """GET with the distribution-spec `n`/`last` pagination (Link headers)."""
    out: list[str] = []
    url = f"{path}?n=1000"
    while url:
        resp = client.request("GET", url, scope=scope, ok=(200,), what=f"listing {path}")
        out += resp.json().get(key) or []
        link = resp.headers.get("link", "")
        url = link[link.find("<") + 1:link.find(">")] if "rel=\"next\"" in link else ""
        url = url.removeprefix(client.base)
    return out
