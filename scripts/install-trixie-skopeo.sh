#!/usr/bin/env bash
# Installs Debian trixie's skopeo (containers/image with sigstore enabled) into .tools/trixie/,
# without touching the system: bookworm's skopeo is built with sigstore disabled and rejects every
# cosign signature, so the signature interop tests need the newer one. A private apt configuration
# reuses this machine's Debian mirror with Suites: trixie; `apt-get download` + `dpkg -x` unpack
# skopeo and the trixie libc it needs. Prints the path of a wrapper script. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.tools/trixie"
wrapper="$PWD/.tools/bin/skopeo-trixie"
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then echo "$wrapper"; exit 0; fi
mkdir -p "$root"/{apt/lists/partial,apt/cache/archives/partial,debs,etc/sources.list.d,etc/preferences.d} "$PWD/.tools/bin"
uri=$(grep -hE '^URIs: .*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$uri" ] || uri=$(grep -hE '^deb .*debian ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$uri" ] || { echo "install-trixie-skopeo: no Debian mirror found in this machine's apt sources" >&2; exit 1; }
cat > "$root/etc/sources.list.d/trixie.sources" <<EOS
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
: > "$root/etc/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$root/etc/sources.list" -o "Dir::Etc::SourceParts=$root/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$root/etc/preferences" -o "Dir::Etc::PreferencesParts=$root/etc/preferences.d"
  -o "Dir::State::Lists=$root/apt/lists" -o "Dir::Cache=$root/apt/cache" -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" -qq update
(cd "$root/debs" && apt-get "${apt_opts[@]}" -qq download skopeo libc6)
for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root/fs"; done
lib="$root/fs/usr/lib/x86_64-linux-gnu"
cat > "$wrapper" <<EOW
#!/bin/sh
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$root/fs/usr/bin/skopeo" "\$@"
EOW
chmod +x "$wrapper"
"$wrapper" --version >&2
echo "$wrapper"
