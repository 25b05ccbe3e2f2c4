"""A plain-HTTP registry client builds its TLS context only when a request goes to HTTPS (startup cost,
issue 14), and that context verifies exactly as always: against a real Distribution serving TLS with a
CA of its own, an HTTPS request from a ``--insecure-registry`` client fails verification unless the
client was given that CA (``--ca-file``), as a redirect to such a host would."""

from __future__ import annotations

import pytest

from airgap.errors import RegistryError
from airgap.registry.client import RegistryClient, RegistryOptions


def _get(client: RegistryClient, url: str) -> int:
    resp = client.request("GET", url, scope="", ok=tuple(range(200, 600)), what="test")
    return resp.status_code


def test_https_from_a_plain_http_client_is_verified_against_the_system_and_given_cas(tls_registry, registry):
    url = f"https://{tls_registry.host}/v2/"
    plain = RegistryClient(registry.host, RegistryOptions(insecure=True, retries=1))
    try:
        assert _get(plain, f"http://{registry.host}/v2/") == 200
        assert plain.http._transport._tls is None  # type: ignore[attr-defined]  # no TLS context built yet
        with pytest.raises(RegistryError) as err:
            _get(plain, url)
        assert "certificate" in str(err.value).lower()
    finally:
        plain.close()
    trusting = RegistryClient(registry.host, RegistryOptions(insecure=True, retries=1, ca_file=tls_registry.ca_file))
    try:
        assert _get(trusting, url) == 200
    finally:
        trusting.close()
