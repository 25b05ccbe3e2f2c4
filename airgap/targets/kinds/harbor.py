"""Harbor v2: projects must exist before anything is pushed into them; tags may be frozen by rules.

Harbor answers a push into a missing project with ``401 unauthorized: unauthorized to access
repository`` (or retries forever, harbor#20544), which reads like bad credentials. So we check every
project first through the API (Harbor swagger v2.0: ``HEAD /projects?project_name=`` 200/404,
``POST /projects`` 201 created / 409 exists / 400 invalid name) and either create it
(``--create-namespaces``; only admins and system robot accounts may) or stop with that explanation.
"""

from __future__ import annotations

import re

import httpx

from airgap import limits
from airgap.errors import AuthError, InputError, RegistryError
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, Target
from airgap.targets.base import OpenTarget, TargetKind

PROJECT_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")  # Harbor's project name rule


def project_of(repository: str) -> str:
    return repository.split("/", 1)[0]


def project_exists(client: RegistryClient, name: str) -> bool:
    resp = client.api("HEAD", "/api/v2.0/projects", params={"project_name": name}, ok=(200, 404),
                      what=f"lookup of Harbor project {name!r}")
    return resp.status_code == 200


def create_project(client: RegistryClient, name: str) -> bool:
    """True when created, False when it existed already (409)."""
    if not PROJECT_RE.match(name):
        raise InputError(f"{name!r} is not a valid Harbor project name (lower-case letters and digits, "
                         "separated by single . _ or -)")
    try:
        resp = client.api("POST", "/api/v2.0/projects", json={"project_name": name, "metadata": {"public": "false"}},
                          ok=(201, 409), what=f"creation of Harbor project {name!r}")
    except AuthError as exc:
        raise AuthError(f"{exc} (only Harbor administrators and system robot accounts may create projects; "
                        "ask one to create it, or use such an account)") from None
    return resp.status_code == 201


def ensure_projects(client: RegistryClient, repositories: list[str], create: bool, progress: Progress) -> list[str]:
    """Every project the repositories live in exists afterwards; returns the ones created."""
    if any("/" not in r for r in repositories):
        bad = next(r for r in repositories if "/" not in r)
        raise InputError(f"Harbor keeps every repository in a project: give --registry {client.host}/<project>, "
                         f"not a bare host ({bad!r} would have no project)")
    created: list[str] = []
    for name in sorted({project_of(r) for r in repositories}):
        if project_exists(client, name):
            continue
        if not create:
            raise RegistryError(
                f"Harbor project {name!r} does not exist on {client.host}. Harbor answers pushes into a missing "
                "project with a misleading 'unauthorized' error. Create the project in Harbor, or rerun with "
                "--create-namespaces (needs a Harbor administrator or a system robot account)")
        if create_project(client, name):
            created.append(name)
            progress.note(f"+ created Harbor project {name}")
    return created


def tags_immutable(client: RegistryClient, repository: str) -> bool | None:
    """Whether the repository's project has an enabled tag immutability rule (None: cannot tell)."""
    project = project_of(repository)
    try:
        resp = client.api("GET", f"/api/v2.0/projects/{project}/immutabletagrules", ok=(200,),
                          what=f"immutability rules of Harbor project {project!r}")
        rules = resp.json()
    except (RegistryError, ValueError):
        return None
    if not isinstance(rules, list):
        return None
    return any(isinstance(r, dict) and not r.get("disabled") for r in rules)


class Harbor(TargetKind):
    name = "harbor"
    title = "Harbor v2"
    order = 20
    mount = True
    referrers = True  # since v2.8
    provisions = True
    namespace_rule = "project must exist"
    namespace_plan = "check each Harbor project; create missing ones with --create-namespaces"
    auth_note = "Bearer token from <harbor>/service/token (Basic user or robot$<project>+<name>)"

    def detect(self, target: Target, client: RegistryClient) -> str | None:
        # GET /api/v2.0/systeminfo answers anonymously with harbor_version (Harbor swagger).
        try:
            resp = client.http.get(client.base + "/api/v2.0/systeminfo", timeout=limits.PROBE_TIMEOUT)
            version = resp.json().get("harbor_version") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return f"/api/v2.0/systeminfo answers harbor_version {version}" if version else None

    def prepare(self, opened: OpenTarget, repositories: list[str], create_namespaces: bool,
                progress: Progress) -> list[str]:
        return ensure_projects(opened.client, repositories, create_namespaces, progress)

    def tags_immutable(self, opened: OpenTarget, repository: str) -> bool | None:
        # Tag immutability rules answer 412 even for the same digest (Harbor docs "Create Tag
        # Immutability Rules"): plan_tags HEADs every tag first and refuses a move up front.
        return tags_immutable(opened.client, repository)


KIND = Harbor()
