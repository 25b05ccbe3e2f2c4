"""Where registry credentials come from, for exactly one registry host.

Explicit credentials (flags, ``AIRGAP_REGISTRY_*``) belong to the command's target registry only; the
CLI decides which host that is and hands them over (``RegistryOptions.credentials_for``). Every other
host gets only what an auth file holds *for it*, looked up as podman and skopeo do
(containers-auth.json(5)): ``REGISTRY_AUTH_FILE`` when set, else ``$XDG_RUNTIME_DIR/containers/auth.json``
and ``~/.config/containers/auth.json``; then docker's ``config.json`` (``DOCKER_CONFIG``). Each file
may hold inline ``auths`` (base64 user:password, or an ``identitytoken``), per-registry
``credHelpers`` and a default ``credsStore``; helpers are ``docker-credential-<name> get`` with the
server on stdin. Docker Hub is keyed ``https://index.docker.io/v1/`` by ``docker login`` and
``docker.io`` by ``podman login``; both are found for every Hub alias.
"""

from __future__ import annotations

import base64
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from airgap import limits
from airgap.errors import AuthError, InputError
from airgap.model.reference import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, canonical_registry, is_docker_hub


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never printed: repr hides it
    # docker's OAuth refresh token (config.json ``identitytoken``): exchanged at the token service.
    identity_token: str | None = field(default=None, repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def auth_file_paths() -> list[Path]:
    """The auth files consulted, in order (podman's and skopeo's order, then docker's)."""
    paths: list[Path] = []
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        paths.append(Path(explicit))
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime:
            paths.append(Path(runtime) / "containers" / "auth.json")
        paths.append(Path.home() / ".config" / "containers" / "auth.json")
    paths.append(docker_config_path())
    return paths


def _keys_for(host: str) -> list[str]:
    """Keys an auth file may use for ``host``; only this host's, never another's."""
    if is_docker_hub(host):
        return [DOCKER_HUB_CONFIG_KEY, DOCKER_HUB, "index.docker.io", "https://index.docker.io",
                "registry-1.docker.io", "https://registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _helper_server(host: str) -> str:
    # docker asks helpers for Hub under its legacy URL, everything else by host name.
    return DOCKER_HUB_CONFIG_KEY if is_docker_hub(host) else host


def _from_helper(helper: str, host: str) -> Credentials | None:
    import subprocess  # only with a credential helper: nothing else of a load starts a process

    exe = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([exe, "get"], input=_helper_server(host).encode(), capture_output=True,
                              timeout=limits.CREDENTIAL_HELPER_TIMEOUT)
    except FileNotFoundError:
        raise AuthError(f"an auth file names credential helper {helper!r} but {exe} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {exe} did not answer within 30 s for {host}") from None
    if proc.returncode != 0:
        # "credentials not found" is the helper's normal answer for an unknown host.
        return None
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AuthError(f"credential helper {exe} returned something that is not JSON for {host}") from None
    user, secret = doc.get("Username", ""), doc.get("Secret", "")
    if not secret:
        return None
    if user == "<token>":  # docker's convention for an identity token held by a helper
        return Credentials("", "", identity_token=secret)
    return Credentials(user, secret)


def from_auth_file(host: str, path: Path) -> Credentials | None:
    """What one auth file (docker config.json or containers auth.json) holds for ``host``."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read registry auth file ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a registry auth file must be a JSON object")
    helpers = doc.get("credHelpers") or {}
    for key in _keys_for(host):
        if key in helpers:
            return _from_helper(helpers[key], host)
    auths = doc.get("auths") or {}
    for key in _keys_for(host):
        entry = auths.get(key)
        if not isinstance(entry, dict) or not entry:
            continue
        user, password = "", ""
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise InputError(f"{path}: the auth entry for {key} is not base64 user:password") from None
        elif entry.get("username") and entry.get("password"):
            user, password = entry["username"], entry["password"]
        if entry.get("identitytoken"):
            return Credentials(user, password, identity_token=entry["identitytoken"])
        if user or password:
            return Credentials(user, password)
    if doc.get("credsStore"):
        return _from_helper(doc["credsStore"], host)
    return None


@dataclass
class Lookup:
    """The credentials found for one host, and everywhere they were looked for (for a 401's message)."""

    credentials: Credentials | None
    searched: list[str]
    found_in: str | None = None

    def where(self) -> str:
        return ", ".join(self.searched)


def lookup(host: str, explicit: Credentials | None = None,
           explicit_from: str = "--username/--password-stdin") -> Lookup:
    """Explicit credentials (already scoped to this host by the caller) win, then the auth files."""
    host = canonical_registry(host)
    if explicit is not None:
        return Lookup(explicit, [explicit_from], explicit_from)
    searched: list[str] = []
    for path in auth_file_paths():
        searched.append(str(path))
        found = from_auth_file(host, path)
        if found is not None:
            return Lookup(found, searched, str(path))
    return Lookup(None, searched)


def resolve(host: str, username: str | None = None, password: str | None = None) -> Credentials | None:
    """Explicit credentials for ``host`` if given, else what its auth files hold."""
    if username and password:
        return Credentials(username, password)
    if username or password:
        raise InputError("give both a registry username and a password (or neither)")
    return lookup(host).credentials


class CredentialSource(ABC):
    """Where the Authenticator gets credentials; ``renew`` when the registry rejected them.

    Static credentials (flags, env, auth files) cannot be renewed; short-lived ones (ECR's 12 h
    tokens) fetch new ones when they expire, including mid-load.
    """

    @abstractmethod
    def get(self) -> Credentials | None:
        """The credentials to use now (None: anonymous)."""

    def renew(self, rejected: Credentials) -> Credentials | None:
        """Freshly obtained credentials after ``rejected`` was refused (worth one retry);
        None when the source cannot renew."""
        return None

    def describe(self) -> str:
        """Where credentials were looked for, for messages (never the credentials)."""
        return ""


class StaticSource(CredentialSource):
    def __init__(self, credentials: Credentials | None, searched: str = ""):
        self._credentials = credentials
        self._searched = searched

    def get(self) -> Credentials | None:
        return self._credentials

    def describe(self) -> str:
        return self._searched
