# Shared definitions of the real node (tests/realnode/up.sh, down.sh and the tests that use
# it). Source after tests/cluster/lib.sh, don't run.
# shellcheck shell=bash

REALNODE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Everything the real node writes lives here (containerd root and state, kubelet root dir, pod
# logs, registry data, CNI IPAM, certificates), so down.sh can remove it in one place.
RN="$STATE/realnode"
# What the tests read: ports, node name, registry credentials, image references (KEY=VALUE).
RN_ENV="$RN/realnode.env"
# Why the real node is not there (kwok-only cluster), when it is not.
RN_DISABLED="$STATE/realnode.disabled"
# Processes of the real node, in start order; down.sh stops them in reverse.
RN_COMPONENTS=(registry containerd kubelet trivy-server apiserver-forwarder kube-proxy coredns)
# The pods' bridge and its host-side address, the pods' gateway: the scan pods reach the trivy
# server there, every pod the API server (a forwarder), cluster DNS and, through kube-proxy,
# Services. FORWARD rules keep the pods' traffic on the bridge: nothing leaves the machine.
RN_BRIDGE=isn-real0
RN_POD_SUBNET=10.88.0.0/24
RN_HOST_IP=10.88.0.1
# The comment on the FORWARD rules that keep the pods' traffic on the bridge (down.sh removes
# exactly the rules with it).
RN_FORWARD_COMMENT=image-scanner-real-node
# Only pods that tolerate this taint run on the real node: the kwok tests' fake images must not
# land there.
RN_TAINT_KEY=image-scanner.test/real-node
# Host settings the kubelet or the bridge plugin change; down.sh puts the recorded values back.
RN_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward)
# The kubelet's iptables chains (table:chain); down.sh removes those up.sh found absent.
RN_KUBELET_CHAINS=(filter:KUBE-FIREWALL mangle:KUBE-IPTABLES-HINT mangle:KUBE-KUBELET-CANARY
  nat:KUBE-KUBELET-CANARY filter:KUBE-KUBELET-CANARY)
# Host folders containerd, libcni and the kubelet (device plugins) create whatever their
# configuration says; removed by
# down.sh when up.sh found them absent.
RN_HOST_DIRS=(/run/containerd /var/lib/cni /var/lib/kubelet)

ctr_rn() { ctr --address "$RN/containerd/containerd.sock" --namespace k8s.io "$@"; }

# rn_pull_secret NAMESPACE: the Secret registry-credentials there, the node registry's login
# (kubernetes.io/dockerconfigjson; the kubelet reads it, the operator never does). Needs kc and
# realnode.env sourced.
rn_pull_secret() {
  kc -n "$1" create secret docker-registry registry-credentials --docker-server="$REGISTRY" \
    --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
}
