#!/bin/sh
# postStart hook of the OpenSearch container: make the admin password OpenSearch checks equal to the
# one the chart's secret backend holds now.
#
# OpenSearch applies OPENSEARCH_INITIAL_ADMIN_PASSWORD only when it first creates its security index
# (on the data volume).  After a reinstall that kept the volume, a rotation in SOPS / External
# Secrets / Vault, or a regenerated Secret, the two differ and every client gets 401.  This script
#   1. waits until OpenSearch answers on $OPENSEARCH_URL,
#   2. stops at once when the current password is accepted (the usual case),
#   3. otherwise sets it with the security plugin's super-admin client certificate (the demo
#      configuration's admin_dn, kirk.pem), which needs no old password, and checks that it works.
# A failure exits non-zero: the kubelet then restarts the container (event FailedPostStartHook)
# instead of leaving an OpenSearch that nobody can log in to.
#
# The password never appears on a command line: curl reads it from its stdin config / body.
set -eu

url=${OPENSEARCH_URL:-https://localhost:9200}
config=${OPENSEARCH_CONFIG_DIR:-/usr/share/opensearch/config}
cert=${ADMIN_CERT:-$config/kirk.pem}
key=${ADMIN_KEY:-$config/kirk-key.pem}
timeout=${SYNC_TIMEOUT_SECONDS:-900}
retry=${SYNC_RETRY_SECONDS:-3}
log_target=${SYNC_LOG:-/proc/1/fd/1}   # PID 1's stdout: the lines show up in `kubectl logs`

log() {
  { printf '%s\n' "haystack-rag sync-admin-password: $*" >>"$log_target"; } 2>/dev/null || printf '%s\n' "$*" >&2
}

if [ -n "${ADMIN_PASSWORD_FILE:-}" ]; then
  password=$(cat "$ADMIN_PASSWORD_FILE")
else
  password=${OPENSEARCH_INITIAL_ADMIN_PASSWORD:-}
fi
if [ -z "$password" ]; then
  log "no admin password given (OPENSEARCH_INITIAL_ADMIN_PASSWORD or ADMIN_PASSWORD_FILE)"
  exit 1
fi

# \ and " escaped: valid inside a JSON string and inside a double-quoted curl config value
escaped=$(printf '%s' "$password" | sed 's/[\\"]/\\&/g')

# HTTP status of an authenticated request for the caller's own identity ("000": no answer)
auth_status() {
  printf 'user = "admin:%s"\n' "$escaped" |
    curl -sk -o /dev/null -w '%{http_code}' --max-time 10 -K - "$url/_plugins/_security/authinfo" || true
}

start=$(date +%s)
while :; do
  status=$(auth_status)
  case "$status" in
    200) log "admin password in sync"; exit 0 ;;
    401) break ;;
  esac
  # 000: not listening yet; 503: security index not initialised yet
  if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
    log "OpenSearch did not answer within ${timeout}s (last status $status)"
    exit 1
  fi
  sleep "$retry"
done

log "OpenSearch refuses the admin password from the secret backend: applying it with the admin certificate"
if [ ! -r "$cert" ] || [ ! -r "$key" ]; then
  log "cannot rotate: no super-admin certificate at $cert / $key"
  exit 1
fi
body=$(printf '{"password": "%s", "backend_roles": ["admin"], "description": "admin user; password managed by the haystack-rag chart"}' "$escaped")
response=$(printf '%s' "$body" |
  curl -sk --max-time 30 --cert "$cert" --key "$key" -X PUT -H 'Content-Type: application/json' \
    --data-binary @- -w '\n%{http_code}' "$url/_plugins/_security/api/internalusers/admin") || true
code=$(printf '%s\n' "$response" | tail -n 1)
case "$code" in
  200|201) ;;
  *) log "setting the admin password failed (HTTP $code): $(printf '%s\n' "$response" | sed '$d')"; exit 1 ;;
esac

# the security plugin reloads its configuration asynchronously
for _ in 1 2 3 4 5 6 7 8 9 10; do
  if [ "$(auth_status)" = 200 ]; then
    log "admin password applied"
    exit 0
  fi
  sleep "$retry"
done
log "the new admin password is still refused after setting it"
exit 1
