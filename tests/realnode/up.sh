#!/usr/bin/env bash
# Add a real node to the running local control plane (tests/cluster/up.sh calls this): a TLS +
# htpasswd registry with the test images, containerd + runc + a CNI bridge, a kubelet built from
# the control plane's own Kubernetes module, and a trivy server with an offline vulnerability DB
# made by trivy-db's own code. Every process binds to 127.0.0.1 (the trivy server to the pods'
# bridge address, which only the node's pods reach), is recorded by PID and stopped by down.sh.
#
# Where the machine cannot run containers (not root, no overlayfs, no cgroups), it writes the
# reason to $STATE/realnode.disabled and exits 0: the cluster stays kwok-only. REAL_NODE=0 asks
# for that explicitly.
#
# Env: REAL_NODE (1 default, 0 = kwok only), CLUSTER_TIMEOUT (seconds per wait, default 120).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

TIMEOUT="${CLUSTER_TIMEOUT:-120}"
t0=$SECONDS
rlog() { log "[real node] $*"; }

disable() { # disable REASON: leave a kwok-only cluster, say why
  printf '%s\n' "$1" > "$RN_DISABLED"
  rlog "NOT STARTED: $1"
  rlog "the cluster runs kwok nodes only; tests that need the real node will fail (REAL_NODE=0 skips them)"
  exit 0
}

if [[ "${REAL_NODE:-1}" == 0 ]]; then
  printf 'REAL_NODE=0\n' > "$RN_DISABLED"
  rlog "REAL_NODE=0: kwok nodes only"
  exit 0
fi
rm -f "$RN_DISABLED"

# --- can this machine run containers? -------------------------------------------------------
[[ "$(id -u)" == 0 ]] || disable "containerd and the kubelet need root (uid $(id -u))"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || disable "no overlayfs in this kernel"
[[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || disable "no memory cgroup"
debs=(runc containernetworking-plugins docker-registry apache2-utils skopeo umoci busybox-static iproute2
  iptables socat)
missing=()
for cmd in runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
  docker-registry:docker-registry htpasswd:apache2-utils skopeo:skopeo umoci:umoci \
  /bin/busybox:busybox-static ip:iproute2 iptables-restore:iptables socat:socat; do
  [[ "${cmd%%:*}" == /* ]] && { [[ -x "${cmd%%:*}" ]] || missing+=("${cmd#*:}"); continue; }
  command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
done
if ((${#missing[@]})); then
  rlog "installing Debian packages: ${missing[*]}"
  "$REPO_ROOT/tests/install/apt-install.sh" "${debs[@]}" || disable "could not install ${missing[*]}"
fi

# --- build (cached) ---------------------------------------------------------------------------
KUBECTL="$STATE/bin/kubectl"
KUBELET="$STATE/bin/kubelet"
[[ -x "$KUBELET" ]] || die "no kubelet in $STATE/bin (tests/cluster/build.sh builds it)"
rlog "building trivy, its offline DB tool and the test images (cached after the first run)"
TRIVY_BIN="$("$here/build-trivy.sh" | tail -1)"
PAUSE_BIN="$("$here/build-pause.sh" | tail -1)"
CONTAINERD_BIN="$("$here/build-containerd.sh" | tail -1)"

mkdir -p "$RN"/{pki,registry/data,containerd/bin,containerd/certs.d,cni/net.d,cni/ipam,kubelet/root,pod-logs,images,trivy}
for d in "${RN_HOST_DIRS[@]}"; do [[ -e "$d" ]] || printf '%s\n' "$d" >> "$RN/created-host-dirs"; done
for s in "${RN_SYSCTLS[@]}"; do printf '%s=%s\n' "$s" "$(sysctl -n "$s")"; done > "$RN/sysctls.orig"

# --- ports (free_port: tests/cluster/lib.sh) ----------------------------------------------------
free_port REGISTRY_PORT; free_port KUBELET_PORT; free_port KUBELET_HEALTHZ_PORT; free_port TRIVY_PORT
free_port PROXY_HEALTHZ_PORT; free_port PROXY_METRICS_PORT; free_port DNS_HEALTH_PORT; free_port DNS_READY_PORT

# The apiserver reaches kubelets by their Hostname address (tests/cluster/up.sh): the node's
# name must resolve to 127.0.0.1 (the kubelet refuses a loopback node IP, so its InternalIP is
# the machine's own address, which nothing here dials).
NODE_NAME="$(hostname)"
if ! getent hosts "$NODE_NAME" | awk '{print $1}' | grep -qx '127\.[0-9.]*'; then
  NODE_NAME=localhost
fi
NODE_NAME="${NODE_NAME,,}"

# --- certificates, signed by the cluster CA ----------------------------------------------------
(
  cd "$RN/pki"
  umask 077
  exec 2>"$RN/pki/openssl.log"
  leaf() { # leaf NAME SUBJECT EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" >/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
      -sha256 -extfile "$1.ext" -out "$1.crt" >/dev/null
  }
  leaf kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf kubelet-serving "/CN=$NODE_NAME" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$NODE_NAME,IP:127.0.0.1"
  # kube-proxy's user is bound to system:node-proxier by the API server's bootstrap RBAC.
  leaf kube-proxy "/CN=system:kube-proxy" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf coredns "/CN=image-scanner-test:coredns" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf registry "/CN=image-scanner-test-registry" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  rm -f ./*.csr ./*.ext
) || die "certificate generation failed; see $RN/pki/openssl.log"

wait_for() { # wait_for NAME DESCRIPTION COMMAND...
  local name="$1" what="$2" deadline=$((SECONDS + TIMEOUT)); shift 2
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$name"; then
      rlog "$name exited while waiting for: $what; last lines of $CLOGS/$name.log:"
      tail -n 30 "$CLOGS/$name.log" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      rlog "timed out after ${TIMEOUT}s waiting for: $what; last lines of $CLOGS/$name.log:"
      tail -n 30 "$CLOGS/$name.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  rlog "ready: $what ($((SECONDS - t0)) s)"
}

# --- registry: TLS + htpasswd (bcrypt, as distribution requires) ---------------------------------
REGISTRY="127.0.0.1:$REGISTRY_PORT"
REGISTRY_USER=image-scanner-test
REGISTRY_PASSWORD="$(openssl rand -hex 16)"
htpasswd -Bbc "$RN/registry/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" 2>/dev/null
cat > "$RN/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $RN/registry/data
http:
  addr: $REGISTRY
  secret: $(openssl rand -hex 16)
  tls:
    certificate: $RN/pki/registry.crt
    key: $RN/pki/registry.key
auth:
  htpasswd:
    realm: image-scanner-test
    path: $RN/registry/htpasswd
EOF
start registry docker-registry serve "$RN/registry/config.yml"
registry_up() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "https://$REGISTRY/v2/")" == 401 ]]; }
wait_for registry "registry on $REGISTRY (401 without credentials)" registry_up

# --- images: the test images go to the registry (private), the node's own images are preloaded ----
rlog "building the test images"
"$here/make-images.sh" "$RN/images" >&2
mkdir -p "$RN/images/certs"
cp "$PKI/ca.crt" "$RN/images/certs/ca.crt"
push() { # push TAG REPOSITORY
  skopeo copy --quiet --dest-cert-dir "$RN/images/certs" --dest-creds "$REGISTRY_USER:$REGISTRY_PASSWORD" \
    "oci:$RN/images/oci:$1" "docker://$REGISTRY/$2"
}
digest_of() { # digest_of REPOSITORY: the manifest digest as the registry serves it
  skopeo inspect --cert-dir "$RN/images/certs" --creds "$REGISTRY_USER:$REGISTRY_PASSWORD" \
    --format '{{.Digest}}' "docker://$REGISTRY/$1"
}
push app:1 test/app:1
push clean:1 test/clean:1
push java:1 test/java:1
# Never pulled with credentials by anything: proves the registry's auth (tests/realnode/smoke.sh).
push clean:1 test/never-pulled:1
APP_DIGEST="$(digest_of test/app:1)"
CLEAN_DIGEST="$(digest_of test/clean:1)"
JAVA_DIGEST="$(digest_of test/java:1)"

# The pause image, the scan Job's trivy image (trivy at /usr/local/bin/trivy and busybox for
# the init container's `cp`) and its Java DB image (/java-db and busybox), built from files
# like the test images.
node_image() { # node_image TAG FILE:PATH... (rootfs = busybox + the files, modes kept)
  local tag="$1" root; shift
  umoci new --image "$RN/images/oci:$tag"
  root="$(mktemp -d "$RN/images/bundle.XXXXXX")"
  umoci unpack --image "$RN/images/oci:$tag" "$root/b" >/dev/null
  mkdir -p "$root/b/rootfs/bin" "$root/b/rootfs/usr/local/bin" "$root/b/rootfs/tmp"
  cp /bin/busybox "$root/b/rootfs/bin/busybox"
  for l in sh cp cat ls mkdir sleep; do ln -sf busybox "$root/b/rootfs/bin/$l"; done
  local f
  for f in "$@"; do install -D -m "$(stat -c %a "${f%%:*}")" "${f%%:*}" "$root/b/rootfs${f#*:}"; done
  umoci repack --image "$RN/images/oci:$tag" "$root/b" >/dev/null
  rm -rf "$root"
}
node_image pause:1 "$PAUSE_BIN/pause:/pause"
umoci config --image "$RN/images/oci:pause:1" --config.entrypoint /pause
node_image trivy:0.74.0 "$TRIVY_BIN/trivy:/usr/local/bin/trivy"
umoci config --image "$RN/images/oci:trivy:0.74.0" --config.entrypoint /usr/local/bin/trivy
node_image trivy-java-db:1 "$RN/images/java-db/trivy-java.db:/java-db/trivy-java.db" \
  "$RN/images/java-db/metadata.json:/java-db/metadata.json"
# The base DB as an image, for the installed trivy server (tests/realnode/install.sh): its init
# container copies it into the server's cache, as a cluster without egress would seed it.
"$TRIVY_BIN/trivydb" --variant base "$RN/images/trivy-db" 2> "$RN/images/trivydb.log" ||
  { cat "$RN/images/trivydb.log" >&2; die "trivydb failed"; }
node_image trivy-db:1 "$RN/images/trivy-db/db/trivy.db:/db/trivy.db" "$RN/images/trivy-db/db/metadata.json:/db/metadata.json"
PAUSE_IMAGE=localhost/image-scanner/pause:1
TRIVY_IMAGE=localhost/image-scanner/trivy:0.74.0
JAVA_DB_IMAGE=localhost/image-scanner/trivy-java-db:1

# --- containerd (CRI), runc, CNI bridge ------------------------------------------------------------
# containerd v2 (built above): image volumes need 2.1 or later. Linked into the node's folder, so
# down.sh and the tests find the same ctr without building anything.
for b in containerd containerd-shim-runc-v2 ctr; do ln -sfn "$CONTAINERD_BIN/$b" "$RN/containerd/bin/$b"; done
mkdir -p "$RN/containerd/certs.d/$REGISTRY"
# containerd tries the [host] entries, then `server` as a fallback: the fallback needs the CA too,
# or a manifest the registry does not have (404 from the host) ends in "x509: certificate
# signed by unknown authority" from the fallback instead of "not found". containerd 1.6 rejects
# a file without a [host] tree ("invalid `host` tree"), so the host is listed as well.
cat > "$RN/containerd/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "https://$REGISTRY"
ca = "$PKI/ca.crt"
[host."https://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  ca = "$PKI/ca.crt"
EOF
# Config version 4 (containerd 2.4's own: an older version is migrated at every start, with a
# warning). No imports: nothing of the host's /etc/containerd reaches this node.
cat > "$RN/containerd/config.toml" <<EOF
version = 4
root = "$RN/containerd/root"
state = "$RN/containerd/state"
imports = []
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.nri.v1.nri"]

# Version 4: the servers are plugins of their own (the top-level [grpc] and [ttrpc] of older
# versions are ignored).
[plugins."io.containerd.server.v1.grpc"]
  address = "$RN/containerd/containerd.sock"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$RN/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$RN/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$RN/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the kubelet
  # asks -998 for sandboxes) and fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
        Root = "$RN/containerd/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$RN/cni/net.d"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
EOF
# One L2 segment whose host side (made here, so the trivy server can bind to it before the first
# pod) is the pods' gateway: to the host's bridge address and, through kube-proxy, to Services.
# No masquerading by the plugin, and the FORWARD rules below keep everything on the bridge.
ip link show "$RN_BRIDGE" >/dev/null 2>&1 || ip link add "$RN_BRIDGE" type bridge
ip addr replace "$RN_HOST_IP/24" dev "$RN_BRIDGE"
ip link set "$RN_BRIDGE" up
cat > "$RN/cni/net.d/10-image-scanner.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "image-scanner-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$RN_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RN/cni/ipam",
        "ranges": [[{ "subnet": "$RN_POD_SUBNET", "rangeStart": "10.88.0.10" }]]
      }
    }
  ]
}
EOF
# Our shim, not one of the host's, next to containerd on its PATH.
start containerd env PATH="$RN/containerd/bin:$PATH" "$RN/containerd/bin/containerd" \
  --config "$RN/containerd/config.toml"
wait_for containerd "containerd socket" ctr_rn version

# Each also under its digest reference, so that a pod spec pinned by digest (the installed
# manifests are) finds it: an imported image has only its tag. NODE_IMAGE_<NAME> = the pinned
# reference, for realnode.env.
for tag in pause:1 trivy:0.74.0 trivy-java-db:1 trivy-db:1; do
  ref="localhost/image-scanner/$tag"
  skopeo copy --quiet "oci:$RN/images/oci:$tag" "docker-archive:$RN/images/${tag%%:*}.tar:$ref"
  ctr_rn images import "$RN/images/${tag%%:*}.tar" >/dev/null
  rm -f "$RN/images/${tag%%:*}.tar"
  digest="$(ctr_rn images ls "name==$ref" | awk 'NR == 2 {print $3}')"
  [[ "$digest" == sha256:* ]] || die "no digest for the imported $ref"
  ctr_rn images tag --force "$ref" "${ref%:*}@$digest" >/dev/null
  var="${tag%%:*}"; var="NODE_IMAGE_${var//-/_}"
  printf -v "${var^^}" '%s@%s' "$ref" "$digest"
done

# --- trivy server with the offline DB (tests/realnode/trivydb) -------------------------------------
TRIVY_SERVER="http://$RN_HOST_IP:$TRIVY_PORT"
cat > "$RN_ENV" <<EOF
NODE_NAME=$NODE_NAME
REGISTRY=$REGISTRY
REGISTRY_USER=$REGISTRY_USER
REGISTRY_PASSWORD=$REGISTRY_PASSWORD
REGISTRY_CA=$PKI/ca.crt
APP_IMAGE=$REGISTRY/test/app:1
APP_DIGEST=$APP_DIGEST
CLEAN_IMAGE=$REGISTRY/test/clean:1
CLEAN_DIGEST=$CLEAN_DIGEST
JAVA_IMAGE=$REGISTRY/test/java:1
JAVA_DIGEST=$JAVA_DIGEST
NEVER_PULLED_IMAGE=$REGISTRY/test/never-pulled:1
TRIVY_IMAGE=$TRIVY_IMAGE
JAVA_DB_IMAGE=$JAVA_DB_IMAGE
NODE_IMAGE_TRIVY=$NODE_IMAGE_TRIVY
NODE_IMAGE_TRIVY_JAVA_DB=$NODE_IMAGE_TRIVY_JAVA_DB
NODE_IMAGE_TRIVY_DB=$NODE_IMAGE_TRIVY_DB
TRIVY_SERVER=$TRIVY_SERVER
TRIVY_BIN=$TRIVY_BIN/trivy
TRIVYDB_BIN=$TRIVY_BIN/trivydb
TAINT_KEY=$RN_TAINT_KEY
KUBELET_PORT=$KUBELET_PORT
KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
EOF
"$here/trivy-server.sh" start base
rlog "ready: trivy server on $TRIVY_SERVER ($((SECONDS - t0)) s)"

# --- kubelet ------------------------------------------------------------------------------------------
b64() { base64 -w0 < "$1"; }
api_port="$(sed -n 's/^API_PORT=//p' "$STATE/ports.env")"
client_kubeconfig() { # client_kubeconfig NAME: a kubeconfig for the client certificate NAME
  cat <<EOK
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(b64 "$RN/pki/$1.crt")
    client-key-data: $(b64 "$RN/pki/$1.key")
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
EOK
}
client_kubeconfig kubelet-client > "$RN/kubelet/kubeconfig"
# What the kubelet adds to the host, recorded so that down.sh removes only that: its cgroups
# (cgroupfs driver) and its iptables chains (pkg/kubelet/kubelet_network_linux.go).
for h in /sys/fs/cgroup/*/; do [[ -d "${h}kubepods" ]] || echo "${h}kubepods"; done > "$RN/created-cgroups"
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  for tc in "${RN_KUBELET_CHAINS[@]}"; do
    "$ipt" -w -t "${tc%%:*}" -S "${tc#*:}" >/dev/null 2>&1 || echo "$ipt:$tc"
  done
done > "$RN/created-iptables-chains"
# At the kubelet's default settings (KubeletEnsureSecretPulledImages on, no node-level
# credentials); tests/realnode/kubelet.sh restarts it in another mode (lib.sh: rn_kubelet_start).
rn_kubelet_start on off
wait_for kubelet "node $NODE_NAME Ready" rn_node_ready

# --- Services and cluster DNS for the pods, as a real cluster has them -------------------------------
# Pods reach ClusterIPs through kube-proxy (iptables mode) on the host: a default route to the
# bridge's host address, forwarding on, and every Service connection masqueraded so replies
# come back through the host's conntrack (no br_netfilter needed). Nothing leaves the machine:
# forwarding is allowed only from the bridge to the bridge.
mkdir -p "$RN/kube-proxy" "$RN/coredns"
sysctl -qw net.ipv4.ip_forward=1
for rule in "-i $RN_BRIDGE ! -o $RN_BRIDGE" "! -i $RN_BRIDGE -o $RN_BRIDGE"; do
  # shellcheck disable=SC2086  # several words each
  iptables -w -I FORWARD $rule -m comment --comment "$RN_FORWARD_COMMENT" -j DROP
done
# The `kubernetes` Service's endpoint is the bridge's host address (the API server's advertise
# address); the API server listens on 127.0.0.1 only, so a forwarder on that address takes the
# pods' connections there. Bound to the bridge address: nothing outside the machine routes to it.
start apiserver-forwarder socat -lf "$CLOGS/apiserver-forwarder.log" "TCP-LISTEN:$api_port,bind=$RN_HOST_IP,reuseaddr,fork" "TCP:127.0.0.1:$api_port"
forwarder_up() { (exec 3<>"/dev/tcp/$RN_HOST_IP/$api_port") 2>/dev/null; }
wait_for apiserver-forwarder "API server forwarder on $RN_HOST_IP:$api_port" forwarder_up

client_kubeconfig kube-proxy > "$RN/kube-proxy/kubeconfig"
# Every host setting kube-proxy would tune stays as it is (0 = leave alone): conntrack table size
# and timeouts, oom_score_adj; localhost NodePorts would set route_localnet.
cat > "$RN/kube-proxy/config.yaml" <<EOK
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RN/kube-proxy/kubeconfig}
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
mode: iptables
clusterCIDR: $RN_POD_SUBNET
iptables: {masqueradeAll: true, localhostNodePorts: false}
nodePortAddresses: ["$RN_HOST_IP/32"]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOK
start kube-proxy "$STATE/bin/kube-proxy" --config="$RN/kube-proxy/config.yaml" --v=1
proxy_synced() {
  curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null &&
    iptables -w -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes:https'
}
wait_for kube-proxy "kube-proxy: the kubernetes Service programmed" proxy_synced

# Cluster DNS: CoreDNS (tests/realnode/coredns) on the bridge's host address, the kubelet's
# clusterDNS, like a node-local DNS cache. It answers cluster.local from the API server and
# nothing else.
kc apply -f - >/dev/null <<EOK
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "image-scanner-test:coredns"}
rules:
- {apiGroups: [""], resources: [services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "image-scanner-test:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "image-scanner-test:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "image-scanner-test:coredns"}]
EOK
client_kubeconfig coredns > "$RN/coredns/kubeconfig"
cat > "$RN/coredns/Corefile" <<EOK
cluster.local:53 in-addr.arpa:53 {
  bind $RN_HOST_IP
  errors
  health 127.0.0.1:$DNS_HEALTH_PORT
  ready 127.0.0.1:$DNS_READY_PORT
  cache 5
  kubernetes cluster.local in-addr.arpa {
    kubeconfig $RN/coredns/kubeconfig local
  }
}
.:53 {
  bind $RN_HOST_IP
  errors
}
EOK
start coredns "$TRIVY_BIN/coredns" -conf "$RN/coredns/Corefile"
wait_for coredns "CoreDNS ready on $RN_HOST_IP:53" curl -sf "http://127.0.0.1:$DNS_READY_PORT/ready"

rlog "real node $NODE_NAME up in $((SECONDS - t0)) s (registry $REGISTRY, trivy server $TRIVY_SERVER); settings in $RN_ENV"
