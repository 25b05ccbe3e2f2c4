"""Shared fixtures: real Distribution registries, skopeo as a second opinion, scratch OCI layouts.

Nothing here is mocked. A missing ``/usr/bin/docker-registry`` (or skopeo / htpasswd) fails the
test that needs it, with a message to run ``make test``: a silently skipped registry test would make a
green run meaningless.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

from registry_server import (  # noqa: E402  (path set just above)
    Registry,
    RegistryError,
    RegistryProcess,
    require_tools,
    run_skopeo as _run_skopeo,
    start_registry,
)

__all__ = ["Registry"]

StartRegistry = Callable[..., Registry]


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRegistry]:
    """``start(tls=False, auth=False) -> Registry``; callable many times, all stopped at teardown.

    ``tls=True``: HTTPS with a fresh trustme CA; ``Registry.ca_file`` is the CA PEM.
    ``auth=True``: htpasswd basic auth as user ``user`` with a random password. Distribution 2.8 does
    not insist on TLS for htpasswd (checked: 401 without, 200 with credentials over plain HTTP), so
    auth does not imply TLS; combine ``tls=True, auth=True`` for the realistic setup.
    """
    started: list[RegistryProcess] = []

    def start(tls: bool = False, auth: bool = False, **kw) -> Registry:
        try:
            require_tools("docker-registry")
            workdir = tmp_path_factory.mktemp("registry")
            rp = start_registry(workdir, tls=tls, auth=auth, **kw)
        except RegistryError as exc:
            problem = str(exc)
        else:
            started.append(rp)
            return rp.registry
        # Outside the except block so the report shows the message, not a chained traceback.
        pytest.fail(problem, pytrace=False)

    try:
        yield start
    finally:
        errors = []
        for rp in reversed(started):
            try:
                rp.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{rp.registry.host}: {exc!r}")
        if errors:
            raise RuntimeError("failed to stop registries: " + "; ".join(errors))


@pytest.fixture
def registry(registry_factory: StartRegistry) -> Registry:
    """Plain-HTTP registry without auth."""
    return registry_factory()


@pytest.fixture
def tls_registry(registry_factory: StartRegistry) -> Registry:
    return registry_factory(tls=True)


@pytest.fixture
def auth_registry(registry_factory: StartRegistry) -> Registry:
    """HTTPS + htpasswd basic auth (the combination real private registries use)."""
    return registry_factory(tls=True, auth=True)


def run_skopeo(*args: str) -> subprocess.CompletedProcess:
    """skopeo with check=True and captured output; fails the test with skopeo's stderr."""
    try:
        return _run_skopeo(*args)
    except RegistryError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def skopeo() -> Callable[..., subprocess.CompletedProcess]:
    return run_skopeo


@pytest.fixture
def public_registries(tmp_path_factory: pytest.TempPathFactory):
    """Docker Hub, Quay and registry.k8s.io as they behave, offline (tests/support/public_registries.py)."""
    require_tools("docker-registry")
    from public_registries import running_public_registries

    with running_public_registries(tmp_path_factory.mktemp("public")) as emulation:
        yield emulation


@pytest.fixture
def referrers_registry(registry_factory: StartRegistry):
    """A Distribution with the distribution-spec referrers API in front (tests/support/referrers_standin.py)."""
    from referrers_standin import ReferrersStandIn

    standin = ReferrersStandIn(registry_factory().host)
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def harbor_factory(registry_factory: StartRegistry, tmp_path_factory: pytest.TempPathFactory):
    """``start(users) -> (HarborStandIn, backend Registry)``: the Harbor stand-in (token service and
    control API, tests/support/harbor_standin.py) in front of a real Distribution; all stopped at teardown."""
    from harbor_standin import HarborStandIn, TokenSigner

    started = []

    def start(users: dict[str, str]):
        standin = HarborStandIn(TokenSigner(tmp_path_factory.mktemp("harbor")), users)
        standin.start()
        started.append(standin)
        backend = registry_factory(auth_config=standin.auth_config())
        standin.attach(backend.host)
        return standin, backend

    try:
        yield start
    finally:
        for standin in started:
            standin.stop()


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """Path of a fresh, empty directory to use as an OCI image layout (synth initialises it)."""
    path = tmp_path / "layout"
    path.mkdir()
    return path
