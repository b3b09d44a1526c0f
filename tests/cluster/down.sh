#!/usr/bin/env bash
# Stop the local control plane started by up.sh and remove its state
# (target/cluster). Only processes recorded in target/cluster/pids/*.pid whose
# command line refers to target/cluster are signalled.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -e "$STATE" ]]; then
  log "no cluster state in $STATE: nothing to do"
  exit 0
fi

pids=()
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  c="${COMPONENTS[$i]}"
  if pid_alive "$c"; then
    pid="$(cat "$PIDS/$c.pid")"
    log "stopping $c (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$c:$pid")
  fi
done

deadline=$((SECONDS + 20))
for entry in "${pids[@]}"; do
  c="${entry%%:*}" pid="${entry##*:}"
  while pid_alive "$c"; do
    if ((SECONDS >= deadline)); then
      log "$c (pid $pid) did not stop after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
done

for c in "${COMPONENTS[@]}"; do
  if pid_alive "$c"; then die "$c (pid $(cat "$PIDS/$c.pid")) is still running; state left in $STATE"; fi
done
rm -rf "$STATE"
log "cluster stopped and $STATE removed"
