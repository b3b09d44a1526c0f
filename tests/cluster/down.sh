#!/usr/bin/env bash
# Stop the local control plane started by up.sh and remove its state
# (target/cluster). Only processes recorded in target/cluster/pids/*.pid whose
# command line refers to target/cluster are signalled.
#
# Order matters: clients first (kwok, scheduler, controller-manager), then the
# apiserver (its shutdown writes to etcd), then etcd. SIGTERM, then SIGKILL
# after 15 s per step.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -e "$STATE" ]]; then
  log "no cluster state in $STATE: nothing to do"
  exit 0
fi

stop() { # stop NAME...: SIGTERM the live ones, wait, SIGKILL what is left
  local c pid deadline=$((SECONDS + 15)) live=()
  for c in "$@"; do
    if pid_alive "$c"; then
      pid="$(cat "$PIDS/$c.pid")"
      log "stopping $c (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$c")
    fi
  done
  for c in "${live[@]}"; do
    while pid_alive "$c"; do
      if ((SECONDS >= deadline)); then
        log "$c (pid $(cat "$PIDS/$c.pid")) did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$(cat "$PIDS/$c.pid")" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.1
    done
  done
}
# The real node first: the kubelet deletes its pods through the API server while that runs.
"$REPO_ROOT/tests/realnode/down.sh"
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

for c in "${COMPONENTS[@]}"; do
  if pid_alive "$c"; then die "$c (pid $(cat "$PIDS/$c.pid")) is still running; state left in $STATE"; fi
done
rm -rf "$STATE"
log "cluster stopped and $STATE removed"
