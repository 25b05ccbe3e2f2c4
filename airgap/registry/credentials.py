"""Where registry credentials come from: flags/env first, then ``docker login``'s config.json.

config.json holds inline ``auths`` (base64 user:password), per-registry ``credHelpers`` and a
default ``credsStore``; helpers are ``docker-credential-<name> get`` with the host on stdin.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from airgap.errors import AuthError, InputError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never printed: repr hides it

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _keys_for(host: str) -> list[str]:
    # docker login writes Docker Hub under its legacy URL; other hosts as given, sometimes with scheme.
    keys = [host, f"https://{host}", f"http://{host}"]
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
    return keys


def _from_helper(helper: str, host: str) -> Credentials | None:
    exe = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([exe, "get"], input=host.encode(), capture_output=True, timeout=30)
    except FileNotFoundError:
        raise AuthError(f"config.json names credential helper {helper!r} but {exe} is not on PATH") from None
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
    return Credentials(user, secret) if secret else None


def from_docker_config(host: str, path: Path | None = None) -> Credentials | None:
    path = path or docker_config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read docker config ({exc.__class__.__name__})") from None
    helpers = doc.get("credHelpers") or {}
    for key in _keys_for(host):
        if key in helpers:
            return _from_helper(helpers[key], host)
    auths = doc.get("auths") or {}
    for key in _keys_for(host):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise InputError(f"{path}: the auth entry for {key} is not base64 user:password") from None
            return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
    if doc.get("credsStore"):
        return _from_helper(doc["credsStore"], host)
    return None


def resolve(host: str, username: str | None = None, password: str | None = None) -> Credentials | None:
    """Explicit credentials win, then AIRGAP_REGISTRY_USERNAME/PASSWORD, then docker's config."""
    username = username or os.environ.get("AIRGAP_REGISTRY_USERNAME")
    password = password or os.environ.get("AIRGAP_REGISTRY_PASSWORD")
    if username and password:
        return Credentials(username, password)
    if username or password:
        raise InputError("give both a registry username and a password (or neither)")
    return from_docker_config(host)


class CredentialSource(ABC):
    """Where the Authenticator gets credentials; ``renew`` when the registry rejected them.

    Static credentials (flags, env, docker config) cannot be renewed; short-lived ones (ECR's 12 h
    tokens) fetch new ones when they expire, including mid-load.
    """

    @abstractmethod
    def get(self) -> Credentials | None:
        """The credentials to use now (None: anonymous)."""

    def renew(self, rejected: Credentials) -> Credentials | None:
        """Freshly obtained credentials after ``rejected`` was refused (worth one retry);
        None when the source cannot renew."""
        return None


class StaticSource(CredentialSource):
    def __init__(self, credentials: Credentials | None):
        self._credentials = credentials

    def get(self) -> Credentials | None:
        return self._credentials
