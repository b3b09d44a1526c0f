# Shared definitions for up.sh, down.sh, smoke.sh and serve-log.sh. Source, don't run.
# shellcheck shell=bash

CLUSTER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SRC/../.." && pwd)"
# Fixed state directory (the kubeconfig path is part of the contract with tests).
# CLUSTER_STATE moves it, for a second, independent cluster (the scale benchmark uses
# target/bench/cluster so that it never disturbs the e2e cluster).
STATE="${CLUSTER_STATE:-$REPO_ROOT/target/cluster}"
KUBECONFIG_FILE="$STATE/kubeconfig"
PKI="$STATE/pki"
PIDS="$STATE/pids"
CLOGS="$STATE/logs-components"
# Test-chosen container logs: $LOGS_DIR/<digest hex>.log (CRI format, see serve-log.sh).
LOGS_DIR="$STATE/logs"
# Start order; down.sh stops in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pid_alive NAME: true when the PID file of NAME names a live process that we
# started (its command line mentions our state directory).
pid_alive() {
  local f="$PIDS/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local attempt
  # While a process execs (setsid, then the component), its command line reads empty for a
  # moment: look again before calling it gone (CI and make test saw a running registry
  # reported as "exited"). A zombie's stays empty.
  for attempt in 1 2 3; do
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$STATE/" && return 0
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 1
    ((attempt < 3)) && sleep 0.05
  done
  return 1
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# free_port VAR: a free port on 127.0.0.1, not handed out before by this script, in VAR.
# 10300-19899: below this machine's ephemeral range (32768-60999), so an outgoing connection
# cannot take the port between this check and the bind.
declare -A TAKEN=()
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((10300 + RANDOM % 9600))
    [[ -n "${TAKEN[$p]:-}" ]] && continue
    port_in_use "$p" && continue
    TAKEN[$p]=1
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "could not find a free port on 127.0.0.1"
}

# start NAME BINARY ARGS...: a component in the background, its PID in $PIDS/NAME.pid, its
# output appended to $CLOGS/NAME.log (a restarted component keeps its earlier lines).
start() {
  local name="$1"; shift
  # setsid: own session, so signals to the caller's process group do not reach it.
  setsid "$@" >>"$CLOGS/$name.log" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" > "$PIDS/$name.pid"
  # Until it execs, the child is a fork of this shell with this shell's command line, which
  # pid_alive would take for an exited component (CI saw it: a forwarder "exited" at once, its
  # log empty). Wait for the exec, or for the child to be gone, up to 10 s.
  for ((i = 0; i < 500; i++)); do
    # Past setsid's own exec too (its command line names ours as well).
    [[ "$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline" | head -n 1)" != setsid ]] &&
      pid_alive "$name" && break
    # Gone, or a zombie (empty command line): it exited already.
    [[ -n "$(tr -d '\0' 2>/dev/null < "/proc/$pid/cmdline")" ]] || break
    sleep 0.02
  done
}

# stop_pid NAME: SIGTERM the component if it runs, SIGKILL after 15 s.
stop_pid() {
  local name="$1" pid deadline=$((SECONDS + 15))
  pid_alive "$name" || return 0
  pid="$(cat "$PIDS/$name.pid")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$name"; do
    if ((SECONDS >= deadline)); then
      log "$name did not stop after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
}
