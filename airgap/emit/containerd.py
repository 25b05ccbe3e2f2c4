"""containerd registry host configuration (``/etc/containerd/certs.d/<host>/hosts.toml``).

Laid out as the directory containerd reads (``config_path = "/etc/containerd/certs.d"``, or
``ctr --hosts-dir``):

- ``<target>/hosts.toml``: how to reach the private registry itself (plain HTTP, or its CA);
- ``<upstream>/hosts.toml`` for each upstream registry the images came from: a mirror entry with
  ``override_path`` onto ``<target>/v2/<prefix>/<upstream host>``. containerd mirrors whole registries
  and keeps the repository path, so with the default ``upstream`` naming (airgap/emit/mapping.py)
  every image resolves by its upstream name. With ``flat`` naming only images whose name equals
  their upstream path do; each file lists which.
- ``ca.crt`` next to each ``hosts.toml`` when the registry has a private CA (``--ca-file``): the file
  is copied, and ``hosts.toml`` names it relative to its own directory (containerd resolves relative
  paths there), so the directory works wherever it is installed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from airgap.emit.mapping import ImageMapping, upstream_base
from airgap.model.reference import DOCKER_HUB
from airgap.registry.client import Target

_UPSTREAM_SERVER = {DOCKER_HUB: "https://registry-1.docker.io"}
CA_NAME = "ca.crt"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(maps: list[ImageMapping], target: Target, *, insecure: bool = False, ca: bytes | None = None,
           naming: str = "upstream") -> dict[str, str | bytes]:
    """Relative path -> file content."""
    scheme = "http" if insecure else "https"
    files: dict[str, str | bytes] = {}

    def host_dir(name: str, lines: list[str]) -> None:
        if ca is not None and not insecure:
            lines.append(f"  ca = {_q(CA_NAME)}")
            files[str(PurePosixPath(name) / CA_NAME)] = ca
        files[str(PurePosixPath(name) / "hosts.toml")] = "\n".join(lines) + "\n"

    host_dir(target.host, [f"# Written by `airgap load`: how containerd reaches the private registry {target.host}.",
                           f"server = {_q(f'{scheme}://{target.host}')}", "",
                           f"[host.{_q(f'{scheme}://{target.host}')}]", '  capabilities = ["pull", "resolve"]'])

    by_host: dict[str, list[ImageMapping]] = defaultdict(list)
    for m in maps:
        if m.source is not None:
            by_host[m.source.registry].append(m)
    for host, items in sorted(by_host.items()):
        if naming == "upstream":
            root = upstream_base(target, host)
            lines = [f"# Written by `airgap load`: pulls from {host} are served by {target.host}/{root}.",
                     "# Images of this bundle, by the name a pod or the node asks for:"]
            lines += [f"#   {m.source_text} -> {m.destination}@{m.digest}" for m in items]
        else:
            root = target.prefix
            lines = [f"# Written by `airgap load`: pulls from {host} are served by {target}.",
                     "# containerd keeps the repository path when it mirrors; with --naming flat, images pushed",
                     "# under another name resolve only through the Helm values file / registries.conf:"]
            for m in items:
                assert m.source is not None  # grouped by it above
                same = m.repository == target.repository(m.source.repository)
                lines.append(f"#   {m.source_text} -> {m.destination}@{m.digest}"
                             + ("" if same else "  (renamed: not served by this mirror)"))
        base = f"{scheme}://{target.host}/v2" + (f"/{root}" if root else "")
        lines += [f"server = {_q(_UPSTREAM_SERVER.get(host, f'https://{host}'))}", "",
                  f"[host.{_q(base)}]", '  capabilities = ["pull", "resolve"]', "  override_path = true"]
        host_dir(host, lines)
    return files
