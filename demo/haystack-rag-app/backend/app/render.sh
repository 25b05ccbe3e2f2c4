#!/bin/sh
# Build step: write the health document the service answers with (busybox sh, no network).
set -eu
service=$1 port=$2 www=$3
mkdir -p "$www/health"
printf '{"service": "%s", "port": %s, "status": "ok"}\n' "$service" "$port" > "$www/health/index.json"
