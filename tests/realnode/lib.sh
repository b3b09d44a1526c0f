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

ctr_rn() { "$RN/containerd/bin/ctr" --address "$RN/containerd/containerd.sock" --namespace k8s.io "$@"; }

# rn_pull_secret NAMESPACE: the Secret registry-credentials there, the node registry's login
# (kubernetes.io/dockerconfigjson; the kubelet reads it, the operator never does). Needs kc and
# realnode.env sourced.
rn_pull_secret() {
  kc -n "$1" create secret docker-registry registry-credentials --docker-server="$REGISTRY" \
    --docker-username="$REGISTRY_USER" --docker-password="$REGISTRY_PASSWORD" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
}

# --- the kubelet (up.sh starts it, kubelet.sh restarts it in another mode) ----------------------
# The kubelet's --root-dir. Its legacy keyring reads <root-dir>/config.json, the node-level
# registry credentials (cmd/kubelet/app/server.go: SetPreferredDockercfgPath), and KEP-2535 keeps
# its pull records in <root-dir>/image_manager/{pulling,pulled}.
RN_KUBELET_ROOT="$RN/kubelet/root"
# The mode the kubelet runs in, for tests to assert: two lines, `gate=on|off`
# (KubeletEnsureSecretPulledImages) and `node-credentials=on|off`.
RN_KUBELET_MODE="$RN/kubelet/mode"

# rn_kubelet_start GATE NODE_CREDENTIALS: write the kubelet's configuration for that mode (each
# on or off) and start it: the one place for both, used by up.sh's first start and by
# `kubelet.sh restart`. Needs NODE_NAME, KUBELET_PORT, KUBELET_HEALTHZ_PORT, REGISTRY,
# REGISTRY_USER, REGISTRY_PASSWORD (up.sh's variables, in realnode.env) and the kubelet's
# kubeconfig (up.sh).
rn_kubelet_start() {
  local gate="$1" node_creds="$2" gates=""
  [[ "$gate" == on || "$gate" == off ]] || die "rn_kubelet_start: GATE must be on or off, got '$gate'"
  [[ "$node_creds" == on || "$node_creds" == off ]] ||
    die "rn_kubelet_start: NODE_CREDENTIALS must be on or off, got '$node_creds'"
  # `on` is the kubelet's default, so the configuration names no feature gate at all:
  # KubeletEnsureSecretPulledImages (KEP-2535; beta and on by default in 1.36) with
  # imagePullCredentialsVerificationPolicy NeverVerifyPreloadedImages (default). A pod may use an
  # image the kubelet pulled with a pull secret only when it presents credentials that match
  # (else the kubelet pulls again with the pod's own, and without any the registry says 401);
  # images pulled anonymously or with the node's credentials, and preloaded ones, are for all.
  # `off` is the old behaviour (kubernetes/kubernetes#18787: any pod uses any image on the node).
  [[ "$gate" == off ]] && gates=$'featureGates:\n  KubeletEnsureSecretPulledImages: false'
  mkdir -p "$RN_KUBELET_ROOT"
  # Node-level credentials: the registry login as a docker config.json where the kubelet's
  # legacy keyring looks. The kubelet adds it to every pull, for pods with and without
  # imagePullSecrets. It is read per pull, but what was read (also "no file") is cached for 5
  # minutes (pkg/credentialprovider/provider.go: CachingDockerConfigProvider, created once per
  # kubelet): a change takes effect at once only with a restart, which always follows here.
  if [[ "$node_creds" == on ]]; then
    (
      umask 077
      printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REGISTRY" \
        "$(printf '%s:%s' "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 -w0)" > "$RN_KUBELET_ROOT/config.json"
    )
  else
    rm -f "$RN_KUBELET_ROOT/config.json"
  fi
  cat > "$RN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $RN/pki/kubelet-serving.crt
tlsPrivateKeyFile: $RN/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$RN/containerd/containerd.sock
podLogsDir: $RN/pod-logs
# This machine has cgroup v1 (hybrid), which kubelet 1.36 refuses unless told otherwise.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
$gates
registerWithTaints:
- key: $RN_TAINT_KEY
  value: "true"
  effect: NoSchedule
# The test images must stay on the node, and nothing may be evicted on a busy CI machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
maxPods: 30
serializeImagePulls: false
# CoreDNS (up.sh) on the bridge's host address.
clusterDNS: [$RN_HOST_IP]
clusterDomain: cluster.local
EOF
  start kubelet "$STATE/bin/kubelet" --config="$RN/kubelet/config.yaml" --kubeconfig="$RN/kubelet/kubeconfig" \
    --root-dir="$RN_KUBELET_ROOT" --hostname-override="$NODE_NAME" \
    --node-labels="image-scanner.test/node=real" --v=1
  printf 'gate=%s\nnode-credentials=%s\n' "$gate" "$node_creds" > "$RN_KUBELET_MODE"
}

# rn_node_ready: the real node's Ready condition is True (needs kc and NODE_NAME).
rn_node_ready() {
  [[ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# rn_kubelet_get PATH: GET from the kubelet's own HTTPS API (/configz, /pods, /healthz) with
# the admin client certificate; the API server's node proxy refuses the node's loopback address.
rn_kubelet_get() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$KUBELET_PORT$1"
}
