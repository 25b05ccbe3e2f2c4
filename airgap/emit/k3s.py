"""k3s / RKE2 ``registries.yaml`` (``/etc/rancher/k3s/registries.yaml``, ``/etc/rancher/rke2/registries.yaml``).

Each upstream registry of the bundle gets a mirror whose endpoint is the private registry, with a
``rewrite`` that puts the repository where it was pushed: ``^(.*)$ -> PREFIX/<upstream host>/$1`` in
``upstream`` naming, one rule per image in ``flat`` naming. ``configs`` says how to reach the
private registry: its CA (copied as ``k3s/airgap-ca.crt``, referenced where the file must be installed),
or plain HTTP through an ``http://`` endpoint.
"""

from __future__ import annotations

import re
from collections import defaultdict

import yaml

from airgap.emit.mapping import ImageMapping, upstream_base
from airgap.registry.client import Target

CA_INSTALLED = "/etc/rancher/k3s/airgap-ca.crt"


def render(maps: list[ImageMapping], target: Target, *, insecure: bool = False, ca: bytes | None = None,
           naming: str = "upstream") -> dict[str, str | bytes]:
    endpoint = f"{'http' if insecure else 'https'}://{target.host}"
    by_host: dict[str, list[ImageMapping]] = defaultdict(list)
    for m in maps:
        if m.source is not None:
            by_host[m.source.registry].append(m)
    mirrors: dict[str, dict] = {}
    for host, items in sorted(by_host.items()):
        if naming == "upstream":
            rewrite = {"^(.*)$": f"{upstream_base(target, host)}/$1"}
        else:
            rewrite = {f"^{re.escape(m.source.repository)}$": m.repository for m in items if m.source is not None}
        mirrors[host] = {"endpoint": [endpoint], "rewrite": rewrite}
    doc: dict = {"mirrors": mirrors}
    files: dict[str, str | bytes] = {}
    if ca is not None and not insecure:
        doc["configs"] = {target.host: {"tls": {"ca_file": CA_INSTALLED}}}
        files["k3s/airgap-ca.crt"] = ca
    header = (f"# Written by `airgap load`: k3s/RKE2 pulls from {', '.join(sorted(by_host)) or 'no upstream'} "
              f"are served by {target.host}.\n"
              + (f"# Install k3s/airgap-ca.crt as {CA_INSTALLED}.\n" if "configs" in doc else ""))
    files["k3s/registries.yaml"] = header + yaml.safe_dump(doc, sort_keys=False)
    return files
