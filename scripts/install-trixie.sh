#!/usr/bin/env bash
# Installs Debian trixie tools into .tools/trixie/<tool>/ without touching the system, and prints the
# path of a wrapper per tool (in .tools/bin/<tool>-trixie). Usage: scripts/install-trixie.sh TOOL...
# Supported: skopeo (containers/image with sigstore enabled: bookworm's is built with sigstore
# disabled and rejects every cosign signature), podman (5.4, with the conmon, crun and netavark it
# insists on finding at start even for `podman pull`; patchelf'd copies whose interpreter and rpath are trixie's
# ld.so and libraries, named in a containers.conf the wrapper uses unless CONTAINERS_CONF is set;
# needs Debian `patchelf`), cosign, oras (Go binaries that run as they are).
# A private apt configuration reuses this machine's Debian mirror with Suites: trixie; `apt-get
# download` + `dpkg -x` unpack the package and, for skopeo, the trixie libc it needs (run through that
# libc's ld.so). Idempotent: a working wrapper is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 TOOL... (skopeo, podman, cosign, oras)" >&2; exit 2; }
top="$PWD/.tools/trixie"
apt_root="$top/apt"
mkdir -p "$apt_root"/{lists/partial,cache/archives/partial,etc/sources.list.d,etc/preferences.d} "$PWD/.tools/bin"
# One installer at a time: `pytest -n` runs the skopeo and podman tests in parallel, and the private
# apt state runs with NoLocking.
exec 9>"$top/.install.lock"
flock 9
apt_ready=""
apt_opts=(-o "Dir::Etc::SourceList=$apt_root/etc/sources.list" -o "Dir::Etc::SourceParts=$apt_root/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$apt_root/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt_root/etc/preferences.d"
  -o "Dir::State::Lists=$apt_root/lists" -o "Dir::Cache=$apt_root/cache" -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root")

prepare_apt() {
  [ -z "$apt_ready" ] || return 0
  local uri
  uri=$(grep -hE '^URIs: .*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hE '^deb .*debian ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$uri" ] || { echo "install-trixie: no Debian mirror found in this machine's apt sources" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" > "$apt_root/etc/sources.list.d/trixie.sources"
  : > "$apt_root/etc/sources.list"
  apt-get "${apt_opts[@]}" -qq update
  apt_ready=1
}

unpack() {  # unpack TOOL PACKAGE...: into .tools/trixie/TOOL/fs
  local tool=$1; shift
  local root="$top/$tool"
  rm -rf "$root/debs" && mkdir -p "$root/debs"
  (cd "$root/debs" && apt-get "${apt_opts[@]}" -qq download "$@")
  for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root/fs"; done
}

for tool in "$@"; do
  wrapper="$PWD/.tools/bin/$tool-trixie"
  if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then echo "$wrapper"; continue; fi
  prepare_apt
  root="$top/$tool"
  case "$tool" in
    skopeo)
      unpack skopeo skopeo libc6
      lib="$root/fs/usr/lib/x86_64-linux-gnu"
      printf '#!/bin/sh\nexec "%s/ld-linux-x86-64.so.2" --library-path "%s:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "%s/fs/usr/bin/skopeo" "$@"\n' \
        "$lib" "$lib" "$root" > "$wrapper" ;;
    podman)
      command -v patchelf >/dev/null 2>&1 || { echo "install-trixie: podman needs patchelf (apt-get install patchelf)" >&2; exit 1; }
      # podman, conmon, crun, netavark, their shared libraries and theirs (readelf NEEDED, closed over trixie).
      unpack podman podman conmon crun netavark libc6 libgpgme11t64 libassuan9 libgpg-error0 libseccomp2 libsqlite3-0 \
        libsubid5 libaudit1 libcap-ng0 libselinux1 libpcre2-8-0 libsemanage2 libsepol2 libbz2-1.0 libcrypt1 \
        libacl1 libattr1 libpam0g libbsd0 libmd0 libglib2.0-0t64 libsystemd0 libyajl2 libcap2 libffi8 \
        libmount1 libblkid1 libgcrypt20 liblz4-1 liblzma5 libzstd1 libatomic1 libgcc-s1
      lib="$root/fs/usr/lib/x86_64-linux-gnu"
      mkdir -p "$root/bin"
      for b in usr/bin/podman usr/bin/conmon usr/bin/crun usr/lib/podman/netavark; do
        cp "$root/fs/$b" "$root/bin/"
        patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" "$root/bin/${b##*/}"
      done
      printf '[engine]\nconmon_path = ["%s/bin/conmon"]\nruntime = "crun"\nhelper_binaries_dir = ["%s/bin"]\n\n[engine.runtimes]\ncrun = ["%s/bin/crun"]\n' \
        "$root" "$root" "$root" > "$root/containers.conf"
      printf '#!/bin/sh\nexport CONTAINERS_CONF="${CONTAINERS_CONF:-%s/containers.conf}"\nexec "%s/bin/podman" "$@"\n' \
        "$root" "$root" > "$wrapper" ;;
    cosign|oras)
      unpack "$tool" "$tool"
      printf '#!/bin/sh\nexec "%s/fs/usr/bin/%s" "$@"\n' "$root" "$tool" > "$wrapper" ;;
    *) echo "install-trixie: unknown tool $tool (skopeo, podman, cosign, oras)" >&2; exit 2 ;;
  esac
  chmod +x "$wrapper"
  "$wrapper" --version >&2 || "$wrapper" version >&2
  echo "$wrapper"
done
