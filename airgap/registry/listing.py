"""Paged listings of the distribution-spec: the catalog and a repository's tags."""

from __future__ import annotations

from airgap.errors import RegistryError
from airgap.registry.client import RegistryClient


def paged(client: RegistryClient, path: str, key: str, scope: str, max_pages: int | None = None) -> list[str]:
    """GET with the distribution-spec `n`/`last` pagination (Link headers). ``max_pages``: raise
    RegistryError rather than read more pages (a listing only worth it while it is short)."""
    out: list[str] = []
    url = f"{path}?n=1000"
    pages = 0
    while url:
        if max_pages is not None and pages >= max_pages:
            raise RegistryError(f"registry {client.host}: listing {path} has more than {max_pages} pages")
        pages += 1
        resp = client.request("GET", url, scope=scope, ok=(200,), what=f"listing {path}")
        out += resp.json().get(key) or []
        link = resp.headers.get("link", "")
        url = link[link.find("<") + 1:link.find(">")] if "rel=\"next\"" in link else ""
        url = url.removeprefix(client.base)
    return out
