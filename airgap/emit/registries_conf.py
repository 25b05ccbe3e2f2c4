"""containers-registries.conf(5) v2 for CRI-O and podman: one mirror per image, the private registry
itself, and its CA under ``/etc/containers/certs.d``.

registries.conf matches a ``prefix`` down to a single repository and its mirror may have any name, so
every image resolves to the exact repository it was pushed to, whatever the naming mode. Drop the file
into ``/etc/containers/registries.conf.d/``. Tag pulls use the mirror too (``pull-from-mirror = "all"``),
since every tag the bundle carries was pushed. The private registry gets its own ``[[registry]]``
entry, marked ``insecure`` when it speaks plain HTTP, so pulls by its own names work too; with
``--ca-file`` the CA goes to ``containers-certs.d/<host>/ca.crt`` (install as
``/etc/containers/certs.d/<host>/ca.crt``).
"""

from __future__ import annotations

from airgap.emit.mapping import ImageMapping
from airgap.registry.client import Target


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(maps: list[ImageMapping], target: Target, *, insecure: bool = False) -> str:
    lines = [f"# Written by `airgap load`: images of this bundle are served by {target}.",
             "# Drop into /etc/containers/registries.conf.d/ (CRI-O, podman, skopeo, buildah).",
             "", "[[registry]]", f"location = {_q(target.host)}"]
    if insecure:
        lines.append("insecure = true")
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


def certs_d(target: Target, ca: bytes | None) -> dict[str, bytes]:
    """``/etc/containers/certs.d/<host:port>/ca.crt`` (containers-certs.d(5))."""
    return {f"containers-certs.d/{target.host}/ca.crt": ca} if ca else {}
