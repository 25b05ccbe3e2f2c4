"""Where registry credentials come from, for one repository of one registry host.

Explicit credentials (flags, ``AIRGAP_REGISTRY_*``) belong to the command's target registry only; the
CLI decides which host that is and hands them over (``RegistryOptions.credentials_for``). Every other
host gets only what an auth file holds *for it*, looked up as podman and skopeo do
(containers-auth.json(5)): ``REGISTRY_AUTH_FILE`` when set, else ``$XDG_RUNTIME_DIR/containers/auth.json``
and ``~/.config/containers/auth.json``; then docker's ``config.json`` (``DOCKER_CONFIG``). Each file
may hold inline ``auths`` (base64 user:password, or an ``identitytoken``), per-registry
``credHelpers`` and a default ``credsStore``; helpers are ``docker-credential-<name> get`` with the
server on stdin. Docker Hub is keyed ``https://index.docker.io/v1/`` by ``docker login`` and
``docker.io`` by ``podman login``; both are found for every Hub alias.

``auths`` keys may name a namespace or repository (``quay.io/team-a``, ``reg:5000/prod/app``), as
containers/image reads them: for repository ``team-a/app/api`` the keys ``HOST/team-a/app/api``,
``HOST/team-a/app``, ``HOST/team-a`` are tried, most specific first and on whole path components, then
the host's own keys. That holds in docker's config.json too (containers/image's extension; docker
itself reads host keys only). Hub repositories are matched as ``library/nginx`` for ``nginx``, and
under any of the Hub hosts (``docker.io/myorg``, containers/image reads only that spelling).
``credHelpers`` and ``credsStore`` are per host, never per namespace (neither docker nor
containers/image asks a helper for a path), and within one file a host's helper comes before its
namespaced ``auths``, as in containers/image.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from airgap import limits
from airgap.errors import AuthError, InputError
from airgap.model.reference import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, canonical_registry, is_docker_hub

# Hub's host names as namespaced keys carry them; podman writes docker.io/<org>, the others are
# accepted so a key spelt after any Hub alias works as its host-only key does.
_HUB_HOSTS = (DOCKER_HUB, "index.docker.io", "registry-1.docker.io")


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
    """Keys an auth file may use for ``host`` itself; only this host's, never another's."""
    if is_docker_hub(host):
        return [DOCKER_HUB_CONFIG_KEY, DOCKER_HUB, "index.docker.io", "https://index.docker.io",
                "registry-1.docker.io", "https://registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def repository_keys(host: str, repository: str) -> list[str]:
    """The namespaced ``auths`` keys for ``repository`` on ``host``, most specific first (the host's
    own keys come after them). Prefixes end on whole path components: ``quay.io/team`` is never
    tried for ``teamster/app``, so one organisation's robot never speaks for a look-alike's."""
    repository = repository.strip("/")
    if not repository:
        return []
    hub = is_docker_hub(host)
    if hub and "/" not in repository:
        repository = f"library/{repository}"  # `nginx` is docker.io/library/nginx
    hosts = _HUB_HOSTS if hub else (host,)
    parts = repository.split("/")
    return [f"{h}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1) for h in hosts]


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


def _read_auth_file(path: Path) -> dict | None:
    """The parsed file, or None when there is none."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read registry auth file ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a registry auth file must be a JSON object")
    for section in ("auths", "credHelpers"):
        if not isinstance(doc.get(section) or {}, dict):
            raise InputError(f"{path}: {section} in a registry auth file must be a JSON object")
    return doc


def _decode_entry(entry: dict, path: Path, key: str) -> Credentials | None:
    """One ``auths`` entry; None when it holds nothing usable (docker writes ``{}`` for a helper)."""
    user, password = "", ""
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError, TypeError):
            raise InputError(f"{path}: the auth entry for {key} is not base64 user:password") from None
    elif entry.get("username") and entry.get("password"):
        user, password = entry["username"], entry["password"]
    if entry.get("identitytoken"):
        return Credentials(user, password, identity_token=entry["identitytoken"])
    if user or password:
        return Credentials(user, password)
    return None


@dataclass(frozen=True)
class _Hit:
    """What one auth file offers: inline credentials, or a helper to ask. ``entry`` names the
    place in the file for messages (``key quay.io/team-a``), never what it holds."""

    entry: str
    credentials: Credentials | None = None
    helper: str | None = None


def _hit_in_file(doc: dict, path: Path, host: str, repository: str) -> _Hit | None:
    # A host's helper first, as containers/image does: helpers are never keyed by namespace.
    helpers = doc.get("credHelpers") or {}
    for key in _keys_for(host):
        if key in helpers:
            return _Hit(f"credHelpers {key}", helper=helpers[key])
    auths = doc.get("auths") or {}
    for key in repository_keys(host, repository) + _keys_for(host):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry:
            found = _decode_entry(entry, path, key)
            if found is not None:
                return _Hit(f"key {key}", credentials=found)
    if doc.get("credsStore"):
        return _Hit("credsStore", helper=doc["credsStore"])
    return None


def _credentials_of(hit: _Hit, host: str, asked: dict[str, Credentials | None] | None) -> Credentials | None:
    """The hit's credentials; a helper is asked once per lookup cache (``asked``, by helper name)."""
    if hit.helper is None:
        return hit.credentials
    if asked is None:
        return _from_helper(hit.helper, host)
    if hit.helper not in asked:
        asked[hit.helper] = _from_helper(hit.helper, host)
    return asked[hit.helper]


@dataclass
class Lookup:
    """The credentials found for one repository (or host), and everywhere they were looked for (for
    a 401's message)."""

    credentials: Credentials | None
    searched: list[str]
    found_in: str | None = None
    entry: str | None = None  # which entry of found_in: "key quay.io/team-a", "credHelpers quay.io"

    def where(self) -> str:
        return ", ".join(self.searched)

    def origin(self) -> str:
        """Where the credentials came from, file and entry (``~/.docker/config.json key quay.io``)."""
        return f"{self.found_in} {self.entry}" if self.entry else (self.found_in or "")


def lookup(host: str, explicit: Credentials | None = None,
           explicit_from: str = "--username/--password-stdin", repository: str = "",
           asked: dict[str, Credentials | None] | None = None) -> Lookup:
    """Explicit credentials (already scoped to this host by the caller) win, for every repository
    of the host; then the auth files in order, each tried from ``repository``'s most specific key
    down to the host's. ``asked`` caches credential helpers' answers across lookups."""
    host = canonical_registry(host)
    if explicit is not None:
        return Lookup(explicit, [explicit_from], explicit_from)
    searched: list[str] = []
    for path in auth_file_paths():
        searched.append(str(path))
        doc = _read_auth_file(path)
        hit = _hit_in_file(doc, path, host, repository) if doc is not None else None
        found = _credentials_of(hit, host, asked) if hit is not None else None
        if hit is not None and found is not None:
            return Lookup(found, searched, str(path), hit.entry)
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


class RepositoryCredentials:
    """One host's credential source for each of its repositories, each looked up once (auth files
    are read, and helpers asked, once per repository and helper, not once per request)."""

    def __init__(self, host: str, explicit: Credentials | None = None,
                 explicit_from: str = "--username/--password-stdin"):
        self.host = canonical_registry(host)
        self._explicit = explicit
        self._explicit_from = explicit_from
        self._sources: dict[str, CredentialSource] = {}
        self._asked: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()  # the copy engine's threads ask at once

    def source(self, repository: str = "") -> CredentialSource:
        """``repository``'s source; ``""`` is the host's own (registry-wide requests)."""
        known = self._sources.get(repository)  # every request asks: no lock once it is known
        if known is not None:
            return known
        with self._lock:
            known = self._sources.get(repository)
            if known is None:
                found = lookup(self.host, self._explicit, self._explicit_from, repository, self._asked)
                where = found.origin() if found.credentials is not None else found.where()
                known = self._sources[repository] = StaticSource(found.credentials, where)
            return known
