"""A containers-registries.conf(5) v2 file for CRI-O and podman: one mirror per image.

Unlike containerd, registries.conf matches a ``prefix`` down to a single repository and its mirror
may have any name, so every image resolves to the exact repository it was pushed to. Drop the file
into ``/etc/containers/registries.conf.d/``. Tag pulls use the mirror too (``pull-from-mirror = "all"``),
since every tag the bundle carries was pushed.
"""

from __future__ import annotations

from airgap.emit.mapping import ImageMapping
from airgap.registry.client import Target


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(maps: list[ImageMapping], target: Target, *, insecure: bool = False) -> str:
    lines = [f"# Written by `airgap load`: images of this bundle are served by {target}.",
             "# Drop into /etc/containers/registries.conf.d/ (CRI-O, podman, skopeo, buildah)."]
    seen: set[str] = set()
    for m in maps:
        if m.source is None:
            lines.append(f"# {m.name}: source {m.source_text} is not a registry; pull {m.destination}@{m.digest}")
            continue
        prefix = f"{m.source.registry}/{m.source.repository}"
        if prefix in seen:
            continue
        seen.add(prefix)
        lines += ["", "[[registry]]", f"prefix = {_q(prefix)}", f"location = {_q(prefix)}", "",
                  "[[registry.mirror]]", f"location = {_q(m.destination)}", 'pull-from-mirror = "all"']
        if insecure:
            lines.append("insecure = true")
    return "\n".join(lines) + "\n"
