#!/usr/bin/env python3
"""`make demo`: the whole job end to end on one machine, offline, on embedded defaults.

The internet is played by the public-registry emulation of the tests (tests/support/public_registries.py): a
loopback HTTPS proxy that answers as Docker Hub, Quay and registry.k8s.io do (Hub's 301 on docker.io,
token services, blobs redirected to a CDN), so the upstream names stay the real ones
(``docker.io/opensearchproject/opensearch:2.18.0``). A throwaway registry on loopback plays the
isolated site (private). Small synthetic stand-ins of the third-party images (OpenSearch, the
exporter, busybox, Traefik) are published under their real names. The first-party images are really
built, with buildah, from the demo sources in demo/haystack-rag-app (upstream's layout, Dockerfiles
with RUN steps) on a busybox base image made here from Debian's busybox-static. The demo then runs the
real commands a user runs: `airgap bundle` (build, pull, pack) from the repository's own IMAGES.md,
unchanged but for the chart's path, `airgap inspect`, `airgap load`, and prints the values file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))
sys.path.insert(0, str(REPO))

from builders import buildah_env, make_busybox_base  # noqa: E402
from public_registries import running_public_registries  # noqa: E402
from registry_server import running_registry  # noqa: E402

import synth  # noqa: E402  (tests/support: test, bench and demo support, not shipped)

from airgap import imagesfile  # noqa: E402

WORK = REPO / ".demo"
DEMO_SOURCES = REPO / "demo" / "haystack-rag-app"
DEMO_BASE = "airgap-demo-base:1"  # the default BASE_IMAGE of the demo Dockerfiles
SHARED_CRDS = REPO.parent / "shared" / "data" / "crds"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


# The demo's throwaway key password; a real pipeline takes COSIGN_PASSWORD from its secret store.
DEMO_ENV = {"COSIGN_PASSWORD": "demo-only-password"}


def run(*args: str, env: dict[str, str] | None = None) -> None:
    print("$ airgap " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "airgap", *args], check=True, cwd=WORK,
                   env={**os.environ, **DEMO_ENV, **(env or {})})


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    spec = imagesfile.load(REPO / "IMAGES.md")
    with running_public_registries(WORK / "public") as upstream, running_registry(WORK / "private") as private:
        # buildah keeps its images in private storage under .demo: the host's own storage is untouched.
        build_env = buildah_env(WORK / "buildah")
        step(f"making the base image {DEMO_BASE} locally: busybox-static, buildah from scratch + commit")
        make_busybox_base(build_env, DEMO_BASE, WORK / "buildah")

        step(f"publishing stand-ins of the third-party images under their real names (Docker Hub, Quay as they "
             f"behave, offline: HTTPS proxy {upstream.host})")
        layout = WORK / "standins"
        store = WORK / "store"
        for n, entry in enumerate(e for e in spec.images if e.source):
            layers = [synth.LayerSpec(size=(1 + n % 3) << 20, seed=10 + n, compressed=True)]
            platforms = [str(p) for p in spec.platforms] or None
            synth.add_image(layout, entry.name, layers=layers, platforms=platforms,
                            labels={"org.opencontainers.image.title": entry.name})
            print(f"  {entry.source} {upstream.seed(layout, entry.name, entry.source)}")
        # The connected side reaches "the internet" through the emulation: HTTPS_PROXY + its CA.
        upstream_env = upstream.env()

        # The repository's IMAGES.md as it is; only the chart path is made absolute for the work directory.
        text = (REPO / "IMAGES.md").read_text()
        text = text.replace("chart: manifests/haystack-rag", f"chart: {REPO / 'manifests/haystack-rag'}")
        # The overlay (observability layer) and the model artifact are this repository's files.
        text = text.replace("context: manifests/images/", f"context: {REPO / 'manifests/images'}/")
        text = text.replace("path: .models/", f"path: {REPO / '.models'}/")
        subprocess.run(["bash", str(REPO / "scripts/fetch-model.sh")], check=True,
                       env={**os.environ, "PY": sys.executable})
        (WORK / "IMAGES.md").write_text(text)
        crd_args: list[str] = []
        for crd in spec.crds:
            # The CRD URL cannot be fetched offline; a verified copy seeds the download cache when there is one.
            candidates = (list(SHARED_CRDS.glob("*.yml")) + list(SHARED_CRDS.glob("*.yaml"))
                          if SHARED_CRDS.is_dir() else [])
            match = next((c for c in candidates if hashlib.sha256(c.read_bytes()).hexdigest() == crd.sha256), None)
            if match:
                (WORK / "files").mkdir(exist_ok=True)
                shutil.copy(match, WORK / "files" / crd.sha256)
        if not (WORK / "files").is_dir():
            print("(no offline copy of the Traefik CRDs here: bundling without them)")
            crd_args = ["--no-crds"]

        step("connected side: a signing key, then bundle = build the first-party images (buildah), "
             "pull the third-party ones, sign, pack")
        run("keygen", "--output-key-prefix", "cosign")
        bundle = f"haystack-rag-{spec.release}.tar"
        run("bundle", "--images", "IMAGES.md", "--source", str(DEMO_SOURCES), "--builder", "buildah",
            "-o", bundle, "--store", str(store), "--key", "cosign.key", *crd_args,
            env={**build_env, **upstream_env})
        run("inspect", bundle)

        step("isolated side: verify offline with the public key")
        run("verify", bundle, "--key", "cosign.pub")

        step(f"isolated side: load into the private registry {private.host}/haystack")
        run("load", bundle, "--registry", f"{private.host}/haystack", "--insecure-registry", "--key", "cosign.pub",
            "--values-out", "values-airgap.yaml", "--crds-out", "crds", "--chart-out", "chart")
        step("a built image as the cluster will pull it: its OCI labels and config")
        cfg = subprocess.run(["skopeo", "inspect", "--config", "--tls-verify=false",
                              f"docker://{private.host}/haystack/haystack-query:{spec.release}"],
                             capture_output=True, text=True, check=True).stdout
        config = json.loads(cfg)["config"]
        print(json.dumps({"Labels": config.get("Labels"), "Env": config.get("Env"), "Cmd": config.get("Cmd")},
                         indent=2))

        step("again: an idempotent re-run uploads nothing")
        run("-q", "load", bundle, "--registry", f"{private.host}/haystack", "--insecure-registry",
            "--key", "cosign.pub", "--values-out", "values-airgap.yaml")

        step(f"values file ({WORK / 'values-airgap.yaml'}):")
        print((WORK / "values-airgap.yaml").read_text())
        helm = shutil.which("helm") or next((str(p) for p in (REPO / ".tools/bin").glob("helm3")), None)
        if helm:
            step("helm template with that values file: every image from the private registry, by digest")
            # the chart refuses to render without an OpenSearch password and an OpenAI key (or LLM endpoint)
            out = subprocess.run([helm, "template", "demo", str(REPO / "manifests/haystack-rag"), "-f",
                                  str(WORK / "values-airgap.yaml"), "--set", "secrets.openaiApiKey=sk-demo",
                                  "--set", "secrets.opensearchPassword=Demo-Passw0rd!x"],
                                 capture_output=True, text=True)
            images = sorted(set(re.findall(r"image: \"?([^\"\s]+)", out.stdout)))
            print("\n".join(images) if out.returncode == 0 else out.stderr)
        print(f"\nDone. Bundle, values file, policy.json, kyverno-policy.yaml, CRDs and chart are in {WORK}.")


if __name__ == "__main__":
    main()
