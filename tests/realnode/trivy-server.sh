#!/usr/bin/env bash
# Control the real node's trivy server (tests/realnode/up.sh starts it; the e2e tests stop it to
# see a scan fail, and restart it on another DB to see a rescan find a new advisory):
#   trivy-server.sh start [base|updated]   write that DB (tests/realnode/trivydb), start, wait
#   trivy-server.sh stop                   stop it (SIGTERM, then SIGKILL after 15 s)
# It listens on the pods' bridge address at the port recorded in realnode.env.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (make cluster-up)"
TRIVY_SERVER="$(sed -n 's/^TRIVY_SERVER=//p' "$RN_ENV")"
TRIVY_BIN="$(sed -n 's/^TRIVY_BIN=//p' "$RN_ENV")"
TRIVYDB_BIN="$(sed -n 's/^TRIVYDB_BIN=//p' "$RN_ENV")"
CACHE="$RN/trivy/cache"
listen="${TRIVY_SERVER#http://}"

case "${1:-}" in
  start)
    variant="${2:-base}"
    stop_pid trivy-server
    rm -rf "$CACHE"
    "$TRIVYDB_BIN" --variant "$variant" "$CACHE" >/dev/null 2>>"$CLOGS/trivy-server.log"
    start trivy-server "$TRIVY_BIN" server --listen "$listen" --cache-dir "$CACHE" --skip-db-update
    deadline=$((SECONDS + ${CLUSTER_TIMEOUT:-120}))
    until curl -fs --max-time 2 "$TRIVY_SERVER/healthz" >/dev/null 2>&1; do
      pid_alive trivy-server || { tail -n 20 "$CLOGS/trivy-server.log" >&2; die "trivy server exited"; }
      ((SECONDS < deadline)) || die "trivy server not healthy at $TRIVY_SERVER"
      sleep 0.2
    done
    printf '%s\n' "$variant" > "$RN/trivy/variant"
    ;;
  stop) stop_pid trivy-server ;;
  *) echo "usage: trivy-server.sh start [base|updated] | stop" >&2; exit 2 ;;
esac
