#!/usr/bin/env bash
# Restart the real node's kubelet in another mode, for tests of what the kubelet does with images
# and pull credentials (tests/realnode/up.sh starts it at its defaults: gate on, no node
# credentials):
#   kubelet.sh restart [--gate=on|off] [--node-credentials=on|off]
#   kubelet.sh mode      print the mode it runs in (the file $RN/kubelet/mode, which up.sh and
#                        restart write: `gate=on|off` and `node-credentials=on|off`, one a line)
# --gate: the feature gate KubeletEnsureSecretPulledImages (KEP-2535): on (the 1.36 default: a
#   pod may use an image the kubelet pulled with a pull secret only with matching credentials)
#   or off (kubernetes/kubernetes#18787: any pod uses any image already on the node).
# --node-credentials: on = node-level registry credentials: the test registry's login in
#   <kubelet root-dir>/config.json, which the kubelet itself uses for pulls of pods without
#   imagePullSecrets (and adds to those with); off = none.
# A flag not given takes its default (not the current mode): `restart` alone goes back to the
# defaults. The configuration and the command line are lib.sh's rn_kubelet_start, as up.sh's.
#
# It waits until the new kubelet runs in that mode (its /configz), has renewed the node's Lease,
# the node is Ready, and nothing that ran on the node was disturbed: the same containerd tasks
# with the same PIDs, and the same pods with the same containers, restart counts and readiness,
# as the new kubelet reports them (its running-pods gauge counts every sandbox again) and for
# 5 s after that.
#
# What a restart does not undo (by KEP-2535's design; the pull records survive restarts, under
# <root-dir>/image_manager): an image pulled anonymously or with node credentials stays usable by
# every pod on the node; an image pulled while the gate was off has no record and counts as
# preloaded once it is on again (usable by every pod, policy NeverVerifyPreloadedImages). Tests
# that need a credential check use an image (name and digest) no such pull has touched.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() { echo "usage: kubelet.sh restart [--gate=on|off] [--node-credentials=on|off] | mode" >&2; exit 2; }

[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (make cluster-up)"
# shellcheck disable=SC1090
source "$RN_ENV"
[[ -n "${KUBELET_PORT:-}" ]] || die "no KUBELET_PORT in $RN_ENV (a real node from an older up.sh: make cluster-down cluster-up)"
KUBECTL="$STATE/bin/kubectl"
TIMEOUT="${CLUSTER_TIMEOUT:-120}"

case "${1:-}" in
  mode) cat "$RN_KUBELET_MODE"; exit 0 ;;
  restart) shift ;;
  *) usage ;;
esac
gate=on node_creds=off
for arg in "$@"; do
  case "$arg" in
    --gate=on | --gate=off) gate="${arg#*=}" ;;
    --node-credentials=on | --node-credentials=off) node_creds="${arg#*=}" ;;
    *) usage ;;
  esac
done
pid_alive kubelet || die "the real node's kubelet is not running (make cluster-up)"

# What runs on the node, compared before and after the restart. Tasks: containerd's (ID and PID
# of every running container and sandbox). Pods: the API server's, as the kubelet reports them
# (per Running pod: uid, and per container ID, restart count, readiness). Pods that start
# meanwhile do not matter; what ran before must still run the same.
node_pods() { kc get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o json; }
tasks() { ctr_rn tasks ls 2>/dev/null | awk '$3 == "RUNNING" {print $1, $2}' | sort; }
pods() {
  node_pods | jq -r '.items[] | select(.status.phase == "Running") |
    "\(.metadata.namespace)/\(.metadata.name) \(.metadata.uid) " +
    ([(.status.initContainerStatuses // [])[], (.status.containerStatuses // [])[] |
      "\(.name)=\(.containerID // "-"):\(.restartCount):\(.ready)"] | join(","))' | sort
}
# running sandboxes (containerd), what the kubelet's gauge kubelet_running_pods counts
sandboxes() {
  comm -12 <(tasks | awk '{print $1}') \
    <(ctr_rn containers ls -q 'labels."io.cri-containerd.kind"==sandbox' 2>/dev/null | sort) | wc -l
}
running_pods_gauge() { rn_kubelet_get /metrics | awk '$1 == "kubelet_running_pods" {print $2}'; }
# still_there BEFORE NOW: every line of BEFORE is in NOW
still_there() { [[ -z "$(comm -23 <(printf '%s\n' "$1") <(printf '%s\n' "$2"))" ]]; }
unchanged() { still_there "$tasks_before" "$(tasks)" && still_there "$pods_before" "$(pods)"; }
show_changes() {
  log "gone or changed since the restart (before the restart / now):"
  comm -23 <(printf '%s\n' "$tasks_before") <(tasks) | sed 's/^/  task: /' >&2
  comm -23 <(printf '%s\n' "$pods_before") <(pods) | sed 's/^/  pod: /' >&2
  pods | sed 's/^/  now: /' >&2
}

# A pod being deleted would change what runs during the restart: wait until none is, nor is
# one in a namespace being deleted (the namespace controller marks its pods only later: a
# previous test's cleanup once removed a pod right after the snapshot).
terminating_ns() { kc get namespaces -o json | jq -c '[.items[] | select(.status.phase == "Terminating") | .metadata.name]'; }
leaving() {
  node_pods | jq --argjson ns "$(terminating_ns)" \
    '[.items[] | select(.metadata.deletionTimestamp or (.metadata.namespace | IN($ns[])))] | length'
}
deadline=$((SECONDS + TIMEOUT))
until [[ "$(leaving)" == 0 ]]; do
  ((SECONDS < deadline)) || die "pods on $NODE_NAME are still being deleted after ${TIMEOUT}s"
  sleep 0.5
done
tasks_before="$(tasks)"
pods_before="$(pods)"
sandboxes_before="$(sandboxes)"

log "[real node] restarting the kubelet: gate=$gate node-credentials=$node_creds ($sandboxes_before pods with a running sandbox)"
stop_pid kubelet
pid_alive kubelet && die "the old kubelet still runs"
started="$(date -u +%s)" started_ns="$(date -u +%s%N)"
rn_kubelet_start "$gate" "$node_creds"

# The new kubelet in the mode asked for, heard from by the API server, Ready.
want_gates='{}'
[[ "$gate" == off ]] && want_gates='{"KubeletEnsureSecretPulledImages":false}'
in_mode() { [[ "$(rn_kubelet_get /configz | jq -c '.kubeletconfig.featureGates // {}')" == "$want_gates" ]]; }
lease_renewed() {
  local t
  t="$(kc get lease -n kube-node-lease "$NODE_NAME" -o jsonpath='{.spec.renewTime}')" || return 1
  # renewed by the new kubelet: after the old one stopped (MicroTime, to the microsecond)
  [[ -n "$t" ]] && (($(date -u -d "$t" +%s%N) >= started_ns))
}
# The new kubelet has found what runs (kubelet_running_pods: pods with a running sandbox, after
# its first relist of containerd).
pods_seen() {
  local n
  n="$(running_pods_gauge)"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= sandboxes_before))
}
deadline=$((SECONDS + TIMEOUT))
for check in in_mode lease_renewed rn_node_ready pods_seen unchanged; do
  until "$check" >/dev/null 2>&1; do
    if ! pid_alive kubelet; then
      tail -n 30 "$CLOGS/kubelet.log" >&2
      die "the kubelet exited (gate=$gate node-credentials=$node_creds); its log: $CLOGS/kubelet.log"
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${TIMEOUT}s waiting for: $check"
      [[ "$check" == unchanged ]] && show_changes
      tail -n 30 "$CLOGS/kubelet.log" >&2
      die "the kubelet did not come back cleanly (gate=$gate node-credentials=$node_creds)"
    fi
    sleep 0.2
  done
done
# And stays so for 5 s: a kubelet that restarts containers, or reports the node not Ready while
# it starts, does so at its first syncs.
settled=$((SECONDS + 5))
while ((SECONDS < settled)); do
  unchanged || { show_changes; die "the kubelet restart disturbed what ran on the node"; }
  rn_node_ready || die "node $NODE_NAME not Ready after the kubelet restart"
  sleep 0.5
done
log "[real node] kubelet restarted in $(($(date -u +%s) - started)) s: $(paste -sd ' ' "$RN_KUBELET_MODE")"
