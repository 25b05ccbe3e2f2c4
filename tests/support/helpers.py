"""Small helpers the end-to-end tests share: run the real CLI, write IMAGES files, build bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from synth import LayerSpec, add_image

REPO = Path(__file__).resolve().parents[2]


def airgap(*args: str, env: dict | None = None, input: str | None = None, check: bool = True,
           cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `airgap` command as a user would (a separate process, output piped)."""
    full_env = dict(os.environ)
    full_env.pop("AIRGAP_REGISTRY_USERNAME", None)
    full_env.pop("AIRGAP_REGISTRY_PASSWORD", None)
    full_env.setdefault("AIRGAP_TOOLS", "none")  # a make dist wheelhouse in the checkout stays out of test bundles
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "airgap", *args], capture_output=True, text=True, env=full_env,
                          input=input, cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"airgap {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def keypair(directory: Path, password: str) -> Path:
    """``airgap keygen`` into ``directory``: the key prefix (``.key`` and ``.pub`` next to it)."""
    airgap("keygen", "--output-key-prefix", str(directory / "k"), env={"COSIGN_PASSWORD": password})
    return directory / "k"


def load_json(*args: str, **kw) -> dict:
    proc = airgap(*args, "--json", **kw)
    return json.loads(proc.stdout)


def load_args(bundle: Path | list[Path], target, path: str = "", *extra: str, key: Path | None = None,
              tls: list[str] | None = None) -> list[str]:
    """The `airgap load` command line every end-to-end test uses, spelled out once.

    ``bundle``: one bundle or a list (a delta after its base, split media). ``target``: a Registry
    fixture (its TLS flags follow from it: ``--insecure-registry`` or ``--ca-file``), a stand-in with a
    ``host`` (loopback, plain HTTP) or a ``HOST[:PORT]`` string. ``path`` goes after the host
    (``--registry HOST/PATH``). ``key``: verify with that public key; without it the bundle is loaded
    with ``--insecure-skip-verify``. ``tls``: the TLS flags to use instead (``[]`` for none)."""
    bundles = bundle if isinstance(bundle, (list, tuple)) else [bundle]
    host = target if isinstance(target, str) else target.host
    if tls is None:
        tls = registry_flags(target) if hasattr(target, "scheme") else ["--insecure-registry"]
    trust = ["--key", str(key)] if key else ["--insecure-skip-verify"]
    return ["load", *trust, *map(str, bundles), "--registry", f"{host}/{path}" if path else host, *tls, *extra]


def run_load(bundle: Path | list[Path], target, path: str = "", *extra: str, key: Path | None = None,
             tls: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run `airgap load` (see load_args) as a user would; ``kw`` as for airgap()."""
    return airgap(*load_args(bundle, target, path, *extra, key=key, tls=tls), **kw)


def load_report(bundle: Path | list[Path], target, path: str = "", *extra: str, key: Path | None = None,
                tls: list[str] | None = None, **kw) -> dict:
    """`airgap load ... --json`: the parsed report."""
    return load_json(*load_args(bundle, target, path, *extra, key=key, tls=tls), **kw)


def write_images_md(path: Path, release: str, entries: list[dict], extra: str = "") -> Path:
    lines = ["# Images", "", "Human text above the block is ignored by the tool.", "", "```yaml airgap",
             f"release: {release}", "images:"]
    for e in entries:
        lines.append(f"  - name: {e['name']}")
        for k, v in e.items():
            if k != "name":
                lines.append(f"    {k}: {v}")
    lines += [extra.rstrip(), "```", ""] if extra else ["```", ""]
    path.write_text("\n".join(lines))
    return path


def assert_upstream_refused(tmp_path: Path, upstream_host: str, cases) -> None:
    """For each (image name under vendor/, key, words): bundling it with IMAGES.md `verify: {key: ...}`
    exits 3 with a message holding ``words`` and the image's name, and writes no bundle."""
    for name, key, words in cases:
        md = write_images_md(tmp_path / "IMAGES2.md", "1.0.0", [
            {"name": name, "source": f"{upstream_host}/vendor/{name}:1.0", "verify": f"{{key: {key}}}"}])
        proc = airgap("bundle", "--images", str(md), "-o", str(tmp_path / "c.tar"), "--no-chart",
                      "--insecure-registry", "--store", str(tmp_path / "store2"), check=False)
        assert proc.returncode == 3 and words in proc.stderr and f"image {name}" in proc.stderr, proc.stderr
        assert not (tmp_path / "c.tar").exists()


def demo_layout(layout: Path) -> dict[str, str]:
    """Three images: two share a base layer, one is a two-platform index. Returns ref -> digest."""
    base = LayerSpec(size=4 << 20, seed=100)
    return {
        "query": add_image(layout, "query", layers=[base, LayerSpec(size=2 << 20, seed=101)]),
        "indexing": add_image(layout, "indexing", layers=[base, LayerSpec(size=1 << 20, seed=102, compressed=True)]),
        "opensearch": add_image(layout, "opensearch", layers=[LayerSpec(size=3 << 20, seed=103)],
                                platforms=["linux/amd64", "linux/arm64"]),
    }


def demo_images_md(tmp: Path, layout: Path, release: str = "0.1.0") -> Path:
    return write_images_md(tmp / "IMAGES.md", release, [
        {"name": "haystack-query", "source": f"oci:{layout}:query", "values": "query.image"},
        {"name": "haystack-indexing", "source": f"oci:{layout}:indexing", "values": "indexing.image"},
        {"name": "opensearch", "source": f"oci:{layout}:opensearch", "values": "opensearch.image", "tag": "2.18.0"},
    ])


def registry_flags(reg) -> list[str]:
    flags = []
    if reg.scheme == "http":
        flags.append("--insecure-registry")
    if reg.ca_file:
        flags += ["--ca-file", str(reg.ca_file)]
    return flags


def demo_bundle_parts(tmp: Path, *extra: str) -> tuple[Path, Path, dict[str, str]]:
    """The demo images bundled (unsigned, no chart) into tmp/bundle.tar: (bundle, layout, ref -> digest)."""
    layout = tmp / "src"
    digests = demo_layout(layout)
    out = tmp / "bundle.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp, layout)), "-o", str(out), "--no-chart",
           "--store", str(tmp / "store"), *extra)
    return out, layout, digests


def demo_bundle(tmp: Path, *extra: str) -> Path:
    return demo_bundle_parts(tmp, *extra)[0]


@contextmanager
def module_registry(workdir: Path) -> Iterator:
    """A Distribution for a module-scoped fixture (``registry_factory`` is per test): started on
    127.0.0.1, stopped however the module ends; a missing docker-registry fails with its reason."""
    import pytest
    from registry_server import RegistryError, require_tools, start_registry

    try:
        require_tools("docker-registry")
        rp = start_registry(workdir)
    except RegistryError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield rp.registry
    finally:
        rp.stop()


def trixie_tool(tool: str) -> str:
    """Path of Debian trixie's ``tool`` (cosign, oras, skopeo, podman) installed without a system
    install by scripts/install-trixie.sh; the test skips, naming why, where it cannot be installed."""
    proc = subprocess.run(["bash", str(REPO / "scripts/install-trixie.sh"), tool], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"Debian trixie's {tool} could not be installed here: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]
