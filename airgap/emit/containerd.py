"""containerd registry host configuration (``/etc/containerd/certs.d/<host>/hosts.toml``).

Two kinds of files, laid out as the directory containerd reads (config_path = "/etc/containerd/certs.d"):
- ``<target>/hosts.toml``: how to reach the private registry itself (plain HTTP, or its CA file);
- ``<upstream>/hosts.toml`` for each upstream registry the images came from: a mirror entry with
  ``override_path`` onto ``<target>/v2/<prefix>``. containerd mirrors whole registries and keeps the
  repository path, so only images whose name equals their upstream path resolve through it; each
  file lists which do. The values file (pinned by digest) is what points the chart at every image.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from airgap.emit.mapping import ImageMapping
from airgap.model.reference import DOCKER_HUB
from airgap.registry.client import Target

_UPSTREAM_SERVER = {DOCKER_HUB: "https://registry-1.docker.io"}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(maps: list[ImageMapping], target: Target, *, insecure: bool = False,
           ca_file: str | None = None) -> dict[str, str]:
    """Relative path -> file content."""
    scheme = "http" if insecure else "https"
    files: dict[str, str] = {}
    own = [f"# Written by `airgap load`: how containerd reaches the private registry {target.host}.",
           f"server = {_q(f'{scheme}://{target.host}')}", "",
           f"[host.{_q(f'{scheme}://{target.host}')}]", '  capabilities = ["pull", "resolve"]']
    if ca_file:
        own.append(f"  ca = {_q(ca_file)}")
    files[f"{target.host}/hosts.toml"] = "\n".join(own) + "\n"

    by_host: dict[str, list[ImageMapping]] = defaultdict(list)
    for m in maps:
        if m.source is not None:
            by_host[m.source.registry].append(m)
    base = f"{scheme}://{target.host}/v2" + (f"/{target.prefix}" if target.prefix else "")
    for host, items in sorted(by_host.items()):
        lines = [f"# Written by `airgap load`: pulls from {host} are served by {target}.",
                 "# containerd keeps the repository path when it mirrors; images pushed under another name",
                 "# resolve only through the Helm values file / registries.conf, as listed here."]
        for m in items:
            same = m.repository == (f"{target.prefix}/{m.source.repository}" if target.prefix else m.source.repository)
            lines.append(f"#   {m.source_text} -> {m.destination}@{m.digest}"
                         + ("" if same else "  (renamed: not served by this mirror)"))
        lines += [f"server = {_q(_UPSTREAM_SERVER.get(host, f'https://{host}'))}", "",
                  f"[host.{_q(base)}]", '  capabilities = ["pull", "resolve"]', "  override_path = true"]
        if ca_file:
            lines.append(f"  ca = {_q(ca_file)}")
        files[str(PurePosixPath(host) / "hosts.toml")] = "\n".join(lines) + "\n"
    return files
