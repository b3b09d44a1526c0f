#!/usr/bin/env bash
# Stop the real node started by up.sh and leave the machine as it was: pods, containers and
# shims, mounts, network namespaces, the bridge, cgroups, the kubelet's iptables canary chains,
# the sysctls the kubelet and the bridge plugin change, and the host folders containerd and
# libcni create. tests/cluster/down.sh calls it before it stops the control plane.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
rlog() { log "[real node] $*"; }

[[ -d "$RN" ]] || exit 0

# 1. While the kubelet still runs, let it stop the pods itself (CNI DEL, volume teardown).
KUBECTL="$(readlink -f "$STATE/bin" 2>/dev/null)/kubectl"
if pid_alive kubelet && [[ -f "$RN_ENV" ]] && kc get --raw /readyz >/dev/null 2>&1; then
  node="$(sed -n 's/^NODE_NAME=//p' "$RN_ENV")"
  kc delete pods -A --field-selector "spec.nodeName=$node" --grace-period=0 --force --wait=false \
    >/dev/null 2>&1 || true
  deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)) && [[ -n "$(ctr_rn tasks ls -q 2>/dev/null)" ]]; do sleep 0.5; done
fi
stop_pid trivy-server
stop_pid coredns
stop_pid kube-proxy
stop_pid apiserver-forwarder
stop_pid kubelet
# kube-proxy's own undo: its iptables (and nftables, IPVS) rules and chains.
if [[ -x "$STATE/bin/kube-proxy" && -f "$RN/kube-proxy/config.yaml" ]]; then
  "$STATE/bin/kube-proxy" --cleanup --config="$RN/kube-proxy/config.yaml" >>"$CLOGS/kube-proxy.log" 2>&1 ||
    rlog "WARNING: kube-proxy --cleanup failed; see $CLOGS/kube-proxy.log"
fi

# 2. Whatever the kubelet left: kill the tasks, then stop containerd and its shims.
if pid_alive containerd; then
  for task in $(ctr_rn tasks ls -q 2>/dev/null); do ctr_rn tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
  sleep 0.5
  for task in $(ctr_rn tasks ls -q 2>/dev/null); do ctr_rn tasks delete -f "$task" >/dev/null 2>&1 || true; done
fi
stop_pid containerd
# Shims outlive containerd by design; ours name our socket on their command line.
for pid in $(pgrep -f "containerd-shim.*-address $RN/containerd/containerd.sock" || true); do
  kill -KILL "$pid" 2>/dev/null || true
done
stop_pid registry

# 3. Mounts under the node's folders (overlay rootfs, shm, tmpfs volumes, netns bind mounts): the
# kubelet bind-mounts its root dir onto itself (rshared), so mounts can be stacked; repeat.
for _ in 1 2 3 4 5; do
  mapfile -t mounts < <(awk -v p="$RN/" 'index($5, p) == 1 || $5 == substr(p, 1, length(p) - 1) {print $5}' \
    /proc/self/mountinfo | sort -r)
  ((${#mounts[@]})) || break
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
done
if awk -v p="$RN/" 'index($5, p) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
  rlog "WARNING: mounts under $RN remain:"; awk -v p="$RN/" 'index($5, p) == 1 {print "  " $5}' /proc/self/mountinfo >&2
fi

# 4. Cgroups the kubelet made (cgroupfs driver): deepest first, in every hierarchy.
if [[ -f "$RN/created-cgroups" ]]; then
  while read -r root; do
    [[ -d "$root" ]] || continue
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$root" ]] && rlog "WARNING: cgroup $root remains"
  done < "$RN/created-cgroups"
fi

# 5. Network: the bridge (pod veths went with their namespaces), up.sh's FORWARD rules, the
# kubelet's iptables chains.
ip link del "$RN_BRIDGE" 2>/dev/null || true
if command -v iptables >/dev/null; then
  iptables -w -S FORWARD | { grep -F -- "--comment $RN_FORWARD_COMMENT" || true; } | while read -r rule; do
    read -ra words <<<"${rule/#-A/-D}"
    iptables -w "${words[@]}" 2>/dev/null || rlog "WARNING: cannot remove FORWARD rule: $rule"
  done
fi
if [[ -f "$RN/created-iptables-chains" ]]; then
  while IFS=: read -r ipt table chain; do
    "$ipt" -w -t "$table" -S "$chain" >/dev/null 2>&1 || continue
    # Rules elsewhere that jump to it first (INPUT/OUTPUT -> KUBE-FIREWALL), then the chain.
    "$ipt" -w -t "$table" -S | { grep -E -- "^-A .* -j $chain( |\$)" || true; } | while read -r rule; do
      read -ra words <<<"${rule/#-A/-D}"
      "$ipt" -w -t "$table" "${words[@]}" 2>/dev/null || true
    done
    "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
    "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || rlog "WARNING: cannot remove $ipt -t $table $chain"
  done < "$RN/created-iptables-chains"
fi

# 6. Sysctls and host folders back as up.sh found them.
if [[ -f "$RN/sysctls.orig" ]]; then
  while IFS='=' read -r key value; do
    [[ "$(sysctl -n "$key" 2>/dev/null)" == "$value" ]] || sysctl -qw "$key=$value" || rlog "WARNING: cannot restore $key=$value"
  done < "$RN/sysctls.orig"
fi
if [[ -f "$RN/created-host-dirs" ]]; then
  while read -r d; do rm -rf "$d"; done < "$RN/created-host-dirs"
fi

rm -rf "$RN" "$RN_DISABLED"
rlog "real node stopped"
