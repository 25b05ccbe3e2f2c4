"""The node files `airgap load` writes, fed to the real clients that read them.

Images come from an upstream registry (a real Distribution on 127.0.0.1, its host name is the
upstream name), are bundled and signed, and the upstream is stopped before anything is pulled: a
pull by upstream name that works was served by the private registry through the emitted files.

- containerd 1.6 (Debian bookworm, installed by scripts/install-deps.sh): a private containerd
  (``--root/--state/--address`` under /tmp) and ``ctr images pull --hosts-dir <emitted certs.d>
  --snapshotter native``, over plain HTTP and over TLS with the CA copied next to hosts.toml.
- containers/image: Debian trixie's skopeo 1.18 and podman 5.4 (sigstore enabled; scripts/install-trixie.sh,
  podman as patchelf'd copies on trixie's glibc, ``podman pull`` into a private vfs store) with the
  emitted registries.conf, policy.json and registries.d: upstream and private names accepted when
  signed; unsigned, moved-tag and wrong-key images refused.
- Kyverno: the emitted ClusterPolicy validated against Kyverno's real ClusterPolicy CRD schema
  (tests/data/kyverno, see its "source" and "commit" fields), with unknown fields refused as
  ``kubectl apply --validate=strict`` does, and no deprecated field used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, airgap, load_json, trixie_tool, write_images_md
from registry_server import run_skopeo, start_registry
from synth import LayerSpec, add_image

PW = {"COSIGN_PASSWORD": "node-pw"}
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


@pytest.fixture
def signed_upstream_bundle(tmp_path):
    """(bundle, key prefix, upstream host, {name: digest}); the upstream registry is stopped."""
    airgap("keygen", "--output-key-prefix", str(tmp_path / "k"), env=PW)
    layout = tmp_path / "src"
    digests = {"query": add_image(layout, "query", layers=[LayerSpec(size=256 << 10, seed=1, compressed=True)]),
               "indexing": add_image(layout, "indexing", layers=[LayerSpec(size=128 << 10, seed=2, compressed=True)])}
    up = start_registry(tmp_path / "upstream")
    try:
        for name in digests:
            run_skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{name}",
                       f"docker://{up.registry.host}/app/{name}:1")
        md = write_images_md(tmp_path / "IMAGES.md", "0.1.0", [
            {"name": "haystack-query", "source": f"{up.registry.host}/app/query:1", "values": "query.image"},
            {"name": "haystack-indexing", "source": f"{up.registry.host}/app/indexing:1"},
        ])
        out = tmp_path / "bundle.tar"
        airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--no-crds", "--insecure-registry",
               "--store", str(tmp_path / "store"), "--key", str(tmp_path / "k.key"), env=PW)
    finally:
        up.stop()
    return out, tmp_path / "k", up.registry.host, digests


def _load(bundle, key, registry, out: Path, *flags: str) -> dict:
    return load_json("load", str(bundle), "--registry", f"{registry.host}/site", "--key", f"{key}.pub",
                     "--values-out", str(out / "values.yaml"), "--emit", "containerd,registries-conf,k3s",
                     "--out-dir", str(out), *flags)


# -- containerd -----------------------------------------------------------------------------------

@pytest.fixture
def containerd():
    if not (CONTAINERD and CTR):
        pytest.skip("containerd is not installed: run `make test` (scripts/install-deps.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="ctd", dir="/tmp"))  # short: the socket path is limited to 108 bytes
    (work / "config.toml").write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    sock = work / "c.sock"
    log = open(work / "log", "wb")
    proc = subprocess.Popen([CONTAINERD, "--config", str(work / "config.toml"), "--root", str(work / "root"),
                             "--state", str(work / "state"), "--address", str(sock)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([CTR, "--address", str(sock), "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start: {(work / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield sock
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _ctr_pull(sock: Path, hosts_dir: Path, ref: str) -> subprocess.CompletedProcess:
    return subprocess.run([CTR, "--address", str(sock), "-n", "airgap", "images", "pull", "--hosts-dir",
                           str(hosts_dir), "--snapshotter", "native", ref], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tls", [False, True], ids=["plain-http", "tls-ca-copied"])
def test_containerd_pulls_upstream_names_through_the_emitted_certs_d(tls, signed_upstream_bundle, registry_factory,
                                                                    containerd, tmp_path):
    bundle, key, upstream, digests = signed_upstream_bundle
    reg = registry_factory(tls=tls)
    out = tmp_path / "nodes"
    flags = ["--ca-file", str(reg.ca_file)] if tls else ["--insecure-registry"]
    _load(bundle, key, reg, out, *flags)
    certs = out / "containerd" / "certs.d"
    if tls:
        assert (certs / reg.host / "ca.crt").read_bytes() == reg.ca_file.read_bytes()
        assert (certs / upstream / "ca.crt").is_file()
    # The CA path on the loading host must not matter: move the directory elsewhere, as a node would.
    node = tmp_path / "node-etc-certs.d"
    shutil.copytree(certs, node)
    for name, digest in digests.items():
        proc = _ctr_pull(containerd, node, f"{upstream}/app/{name}:1")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert digest in subprocess.run([CTR, "--address", str(containerd), "-n", "airgap", "images", "ls"],
                                        capture_output=True, text=True).stdout
    # and the private name itself, through the registry's own hosts.toml
    proc = _ctr_pull(containerd, node, f"{reg.host}/site/{upstream.replace(':', '_')}/app/query:1")
    assert proc.returncode == 0, proc.stderr + proc.stdout


# -- containers/image: skopeo 1.18 and podman 5.4 from trixie ---------------------------------------

@pytest.fixture(scope="module")
def trixie_skopeo():
    return trixie_tool("skopeo")


@pytest.fixture(scope="module")
def trixie_podman():
    return trixie_tool("podman")


def _skopeo_puller(skopeo: str, out: Path, tmp_path: Path):
    env = dict(os.environ, HOME=str(tmp_path))

    def pull(ref: str, policy_file: Path) -> subprocess.CompletedProcess:
        dest = tmp_path / f"pulled-{abs(hash((ref, str(policy_file))))}"
        return subprocess.run([skopeo, "--registries-conf", str(out / "registries.conf"), "--policy",
                               str(policy_file), "--registries.d", str(out / "registries.d"), "copy",
                               "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}"],
                              capture_output=True, text=True, env=env, timeout=120)
    return pull


def _podman_puller(podman: str, out: Path, tmp_path: Path):
    """A node's view: registries.conf via CONTAINERS_REGISTRIES_CONF, the policy via --signature-policy,
    registries.d as $HOME/.config/containers/registries.d (containers/image's per-user directory,
    used instead of /etc/containers/registries.d when it exists). No --tls-verify flag: the emitted
    registries.conf must say the registry is insecure. A fresh store per pull, so nothing is cached."""
    home = tmp_path / "podman-home"
    shutil.copytree(out / "registries.d", home / ".config/containers/registries.d")
    (home / "storage.conf").write_text('[storage]\ndriver = "vfs"\n')  # not the machine's storage.conf
    env = dict(os.environ, HOME=str(home), CONTAINERS_REGISTRIES_CONF=str(out / "registries.conf"),
               CONTAINERS_STORAGE_CONF=str(home / "storage.conf"))

    def pull(ref: str, policy_file: Path) -> subprocess.CompletedProcess:
        store = Path(tempfile.mkdtemp(prefix="podman", dir=tmp_path))
        base = [podman, "--root", str(store / "root"), "--runroot", str(store / "run"), "--tmpdir",
                str(store / "tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none"]
        proc = subprocess.run([*base, "pull", "--signature-policy", str(policy_file), ref],
                              capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode == 0:  # pulled for real: the image is in the store under the name asked for
            exists = subprocess.run([*base, "image", "exists", ref], capture_output=True, text=True, env=env)
            assert exists.returncode == 0, f"{ref}: pulled but not in the store: {exists.stderr}"
        shutil.rmtree(store, ignore_errors=True)  # vfs: plain directories, nothing mounted
        return proc
    return pull


@pytest.mark.parametrize("client", ["skopeo-1.18", "podman-5.4"])
def test_containers_policy_accepts_signed_by_both_names_and_refuses_the_rest(client, signed_upstream_bundle,
                                                                            registry, request, tmp_path):
    bundle, key, upstream, digests = signed_upstream_bundle
    if client.startswith("skopeo"):
        tool = request.getfixturevalue("trixie_skopeo")
    else:
        tool = request.getfixturevalue("trixie_podman")
    out = tmp_path / "nodes"
    _load(bundle, key, registry, out, "--insecure-registry")
    policy = json.loads((out / "policy.json").read_text())
    assert policy["default"] == [{"type": "reject"}]
    private_query = f"{registry.host}/site/{upstream.replace(':', '_')}/app/query"
    assert {f"{upstream}/app/query", private_query} <= set(policy["transports"]["docker"])
    puller = (_skopeo_puller if client.startswith("skopeo") else _podman_puller)(tool, out, tmp_path)

    def copy(ref: str, policy_file: Path = out / "policy.json") -> subprocess.CompletedProcess:
        return puller(ref, policy_file)

    for ref in (f"{upstream}/app/query:1", f"{upstream}/app/indexing:1", f"{private_query}:1"):
        proc = copy(ref)
        assert proc.returncode == 0, f"{ref}: {proc.stderr}"

    # Unsigned: the same repository, a tag nobody signed.
    layout = tmp_path / "evil"
    add_image(layout, "evil", layers=[LayerSpec(size=64 << 10, seed=66)])
    run_skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:evil", f"docker://{private_query}:unsigned")
    run_skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:evil", f"docker://{registry.host}/site/other:1")
    for ref in (f"{private_query}:unsigned", f"{registry.host}/site/other:1"):
        proc = copy(ref)
        assert proc.returncode != 0 and ("signature" in proc.stderr.lower() or "rejected" in proc.stderr.lower()), ref

    # Moved tag: query's tag 1 now points at the indexing image, validly signed but as another identity.
    private_indexing = private_query.replace("/app/query", "/app/indexing")
    run_skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
               f"docker://{private_indexing}:1", f"docker://{private_query}:1")
    from airgap.copy import CopyEngine, CopyJob
    from airgap.places.registry import RegistryStore
    from airgap.registry.client import RegistryClient, RegistryOptions
    from airgap.sign.cosign import signature_tag
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        tag = signature_tag(digests["indexing"])
        repo = lambda ref: ref.split("/", 1)[1]  # noqa: E731
        CopyEngine().copy([CopyJob("sig", RegistryStore(client, repo(private_indexing)), tag,
                                   RegistryStore(client, repo(private_query)), [tag])])
    finally:
        client.close()
    for ref in (f"{upstream}/app/query:1", f"{private_query}:1"):
        proc = copy(ref)
        assert proc.returncode != 0 and "signature" in proc.stderr.lower(), ref
    # Wrong key: the same files with another key are refused.
    import base64
    from airgap.sign import keys
    doc = json.loads((out / "policy.json").read_text())
    other = keys.generate().public
    for rules in doc["transports"]["docker"].values():
        for r in rules:
            if "keyData" in r:
                r["keyData"] = base64.b64encode(other.pem()).decode()
    (tmp_path / "wrong.json").write_text(json.dumps(doc))
    proc = copy(f"{upstream}/app/indexing:1", tmp_path / "wrong.json")
    assert proc.returncode != 0 and "signature" in proc.stderr.lower()


def test_registries_conf_marks_the_private_registry_insecure_and_k3s_rewrites(signed_upstream_bundle, registry,
                                                                              tmp_path):
    bundle, key, upstream, _ = signed_upstream_bundle
    out = tmp_path / "nodes"
    _load(bundle, key, registry, out, "--insecure-registry")
    import tomllib
    conf = tomllib.loads((out / "registries.conf").read_text())
    own = next(r for r in conf["registry"] if r.get("location") == registry.host and "prefix" not in r)
    assert own["insecure"] is True
    k3s = yaml.safe_load((out / "k3s" / "registries.yaml").read_text())
    assert k3s["mirrors"][upstream] == {"endpoint": [f"http://{registry.host}"],
                                        "rewrite": {"^(.*)$": f"site/{upstream.replace(':', '_')}/$1"}}


# -- Kyverno ----------------------------------------------------------------------------------------

def _strict(schema):
    """Kubernetes structural schemas prune unknown fields; --validate=strict refuses them: so do we."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(x) for x in schema]
    return schema


def _deprecated_paths(doc, schema, path=""):
    found = []
    if isinstance(doc, dict) and isinstance(schema, dict):
        props = schema.get("properties", {})
        for k, v in doc.items():
            sub = props.get(k, {})
            if sub.get("description") == "Deprecated":
                found.append(f"{path}.{k}")
            found += _deprecated_paths(v, sub, f"{path}.{k}")
    elif isinstance(doc, list) and isinstance(schema, dict):
        for i, v in enumerate(doc):
            found += _deprecated_paths(v, schema.get("items", {}), f"{path}[{i}]")
    return found


def test_kyverno_policy_is_valid_for_the_real_clusterpolicy_crd(signed_upstream_bundle, registry, tmp_path):
    import jsonschema
    bundle, key, upstream, _ = signed_upstream_bundle
    out = tmp_path / "nodes"
    _load(bundle, key, registry, out, "--insecure-registry")
    policy = yaml.safe_load((out / "kyverno-policy.yaml").read_text())
    crd = json.loads((REPO / "tests/data/kyverno/clusterpolicy-v1.schema.json").read_text())
    assert policy["apiVersion"] == f"{crd['group']}/{crd['version']}" and policy["kind"] == crd["kind"]
    schema = _strict(crd["openAPIV3Schema"])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(policy), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert _deprecated_paths(policy, crd["openAPIV3Schema"]) == []
    verify = policy["spec"]["rules"][0]["verifyImages"]
    assert all(v["failureAction"] == "Enforce" for v in verify)
    refs = [r for v in verify for r in v["imageReferences"]]
    assert f"{registry.host}/site/*" in refs and f"{upstream}/app/query:*" in refs
    # the strict check can fail: a misspelt field is refused
    bad = json.loads(json.dumps(policy))
    bad["spec"]["rules"][0]["verifyImages"][0]["failureActionTypo"] = "Enforce"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))
