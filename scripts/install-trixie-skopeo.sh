#!/usr/bin/env bash
# Kept for callers of the old name: Debian trixie's skopeo via the general installer.
exec bash "$(dirname "$0")/install-trixie.sh" skopeo
