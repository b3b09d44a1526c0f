#!/usr/bin/env bash
# Installs kustomize/overlays/e2e on the local control plane (make cluster-up first) and proves
# the operator's RBAC is what docs/install.md says: `kubectl auth can-i` as the operator's
# ServiceAccount, positive (everything the operator does, scan Jobs in workload namespaces
# included) and negative (Secrets, pods, other ConfigMaps, other writes, ...). Writes
# target/e2e/operator.kubeconfig (a 2 h token of that ServiceAccount) and
# target/e2e/operator.env (the installed image-scanner-config as KEY=VALUE
# lines, plus POD_NAMESPACE) for the e2e suite, which runs the operator on the host with exactly
# the installed permissions. Prints PASS/FAIL lines; exit 1 when anything failed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="$REPO_ROOT/target/cluster"
KUBECTL="$STATE/bin/kubectl"
ADMIN_KUBECONFIG="$STATE/kubeconfig"
[[ -x "$KUBECTL" && -f "$ADMIN_KUBECONFIG" ]] || die "no running cluster (run make cluster-up)"
E2E_DIR="$REPO_ROOT/target/e2e"
mkdir -p "$E2E_DIR" "$WORK_DIR"
kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

NS=image-scanner
SA=image-scanner-controller-manager
SUBJECT="system:serviceaccount:$NS:$SA"
CRD=containerimagescans.stas.statnett.no
LEASE=398aa7bc.statnett.no

# --- install ---------------------------------------------------------------------------------
apply_log="$WORK_DIR/e2e-apply.log"
if kc apply --server-side --field-manager=image-scanner-install --force-conflicts \
     -k "$KUSTOMIZE_DIR/overlays/e2e" >"$apply_log" 2>&1; then
  pass "kubectl apply --server-side -k kustomize/overlays/e2e ($(grep -c 'serverside-applied\|unchanged' "$apply_log") objects)"
else
  fail "kubectl apply --server-side -k kustomize/overlays/e2e:"; sed 's/^/    /' "$apply_log"
  finish install-e2e
fi
if grep -qi 'warning' "$apply_log"; then
  fail "apply printed warnings (Pod Security or deprecations):"; grep -i warning "$apply_log" | sed 's/^/    /'
else
  pass "apply printed no warnings (operator and trivy server pods meet the restricted Pod Security Standard)"
fi
if kc wait --for=condition=Established "crd/$CRD" --timeout=60s >/dev/null 2>&1; then
  pass "CRD $CRD Established"
else
  fail "CRD $CRD not Established within 60 s"
fi
for label in enforce=baseline warn=restricted audit=restricted; do
  got="$(kc get ns "$NS" -o jsonpath="{.metadata.labels.pod-security\.kubernetes\.io/${label%%=*}}")"
  [[ "$got" == "${label#*=}" ]] && pass "namespace $NS: pod-security ${label%%=*}=$got" \
    || fail "namespace $NS: pod-security ${label%%=*} is '$got', want ${label#*=}"
done
# Rollouts: kwok plays the kubelet, so the pods become Ready although nothing runs.
for w in deployment/image-scanner-controller-manager statefulset/trivy; do
  if kc -n "$NS" rollout status "$w" --timeout=90s >/dev/null 2>&1; then
    pass "$w rolled out (kwok)"
  else
    fail "$w did not roll out within 90 s: $(kc -n "$NS" get "$w" -o wide 2>&1 | tail -1)"
  fi
done
for obj in configmap/trivy-job-config serviceaccount/image-scanner-job networkpolicy/trivy service/trivy \
           clusterrolebinding/image-scanner-workload-scan-rolebinding; do
  kc -n "$NS" get "$obj" >/dev/null 2>&1 && pass "$obj exists" || fail "$obj missing"
done

# --- operator kubeconfig -----------------------------------------------------------------------
kubeconfig="$E2E_DIR/operator.kubeconfig"
server="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
if token="$(kc -n "$NS" create token "$SA" --duration=2h 2>"$WORK_DIR/token.err")"; then
  umask 077
  cat >"$kubeconfig.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: $SA
    user:
      token: $token
contexts:
  - name: operator
    context:
      cluster: local
      user: $SA
      namespace: $NS
current-context: operator
KC
  mv "$kubeconfig.tmp" "$kubeconfig"
  who="$("$KUBECTL" --kubeconfig "$kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)"
  [[ "$who" == "$SUBJECT" ]] && pass "target/e2e/operator.kubeconfig authenticates as $who (token valid 2 h)" \
    || fail "target/e2e/operator.kubeconfig: whoami says '$who', want $SUBJECT"
else
  fail "kubectl create token $SA: $(cat "$WORK_DIR/token.err")"
fi
# The installed operator configuration, for running the operator on the host like the pod.
cm="$(kc -n "$NS" get deploy image-scanner-controller-manager \
        -o jsonpath='{.spec.template.spec.containers[0].envFrom[0].configMapRef.name}')"
if kc -n "$NS" get configmap "$cm" -o json \
     | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print("\n".join(f"{k}={v}" for k,v in sorted(d.items())))' \
     >"$E2E_DIR/operator.env.tmp" 2>/dev/null; then
  echo "POD_NAMESPACE=$NS" >>"$E2E_DIR/operator.env.tmp"
  mv "$E2E_DIR/operator.env.tmp" "$E2E_DIR/operator.env"
  pass "target/e2e/operator.env written from configmap/$cm ($(wc -l <"$E2E_DIR/operator.env") variables)"
else
  fail "could not read configmap '$cm' named by the Deployment"
fi

# --- RBAC: kubectl auth can-i as the ServiceAccount (with its groups) --------------------------
as=(--as="$SUBJECT" --as-group=system:serviceaccounts --as-group="system:serviceaccounts:$NS"
    --as-group=system:authenticated)
# can yes|no VERB RESOURCE [flags...]
can() {
  local want="$1"; shift
  local got
  got="$(kc auth can-i "${as[@]}" "$@" 2>/dev/null || true)"
  got="${got%%$'\n'*}"
  if [[ "$got" == "$want" ]]; then
    pass "can-i $* -> $got"
  else
    fail "can-i $* -> '${got:-error}', want $want"
  fi
}
# Cluster-wide reads (pods, Jobs and core Events also: scan Jobs, their pods, BackOff and
# FailedCreate Events wherever a scan Job runs).
for v in list watch; do
  can yes "$v" pods -A
  can yes "$v" events -A
  can yes "$v" nodes
  for r in deployments.apps replicasets.apps statefulsets.apps daemonsets.apps cronjobs.batch jobs.batch; do
    can yes "$v" "$r" -A
  done
done
# ContainerImageScans in any namespace, their status, their Events.
for v in get list watch create patch delete; do can yes "$v" "$CRD" -A; done
can yes patch "$CRD" --subresource=status -n default
can yes create events.events.k8s.io -n default
can yes patch events.events.k8s.io -n default
can yes get "customresourcedefinitions.apiextensions.k8s.io/$CRD"
can yes get /apis
# Scan namespace.
for v in create delete list watch; do can yes "$v" jobs.batch -n "$NS"; done
can yes get pods --subresource=log -n "$NS"
can yes list events -n "$NS"
can yes watch events -n "$NS"
# trivy-job-config, by name only (copied into scan Jobs in workload namespaces).
for v in get list watch; do can yes "$v" configmaps/trivy-job-config -n "$NS"; done
# Workload namespaces (ClusterRoleBinding image-scanner-workload-scan-rolebinding): scan Jobs
# with a workload's pull secrets, their logs. Every namespace, kube-system included: the cost
# of the cluster-wide binding (docs/install.md, "Scan Job placement").
for ns in default e2e-workload kube-system; do
  for v in create delete; do can yes "$v" jobs.batch -n "$ns"; done
  can yes get pods --subresource=log -n "$ns"
done
# Leader election.
can yes create leases.coordination.k8s.io -n "$NS"
can yes get "leases.coordination.k8s.io/$LEASE" -n "$NS"
can yes patch "leases.coordination.k8s.io/$LEASE" -n "$NS"
can yes watch "leases.coordination.k8s.io/$LEASE" -n "$NS"

# Never: Secrets, pods, other writes, other namespaces, other Leases, escalation.
for v in get list watch; do
  can no "$v" secrets -A
  can no "$v" secrets -n "$NS"
  can no "$v" secrets -n default
  can no "$v" secrets -n kube-system
done
# ConfigMaps: never get (trivy-job-config in the scan namespace only, by name); list and watch
# everywhere, for the OpenVEX documents exceptions reference — the operator asks only for
# those labelled image-scanner.statnett.no/vex=true (RBAC cannot narrow by label; docs/install.md).
can no get configmaps -n kube-system
can no get configmaps -n "$NS"
can no get configmaps/kube-root-ca.crt -n "$NS"
can no get configmaps/trivy-job-config -n default
for v in list watch; do can yes "$v" configmaps -n default; done
for v in create patch update delete; do can no "$v" configmaps/trivy-job-config -n "$NS"; done
for ns in "$NS" default; do
  can no create pods -n "$ns"
  can no delete pods -n "$ns"
  can no get pods -n "$ns"
  can no create pods --subresource=exec -n "$ns"
  can no get pods --subresource=exec -n "$ns"
  can no create pods --subresource=attach -n "$ns"
  can no create pods --subresource=portforward -n "$ns"
done
for r in deployments.apps statefulsets.apps daemonsets.apps replicasets.apps; do
  can no delete "$r" -n default
  can no patch "$r" -A
done
# Jobs: create and delete only (scan Jobs are never changed); no CronJobs.
for v in patch update; do
  can no "$v" jobs.batch -n default
  can no "$v" jobs.batch -n "$NS"
  can no "$v" jobs.batch -n kube-system
done
can no update jobs.batch --subresource=status -n default
for v in create delete patch update; do can no "$v" cronjobs.batch -n default; done
can no update "$CRD" -A
can no update "$CRD" --subresource=status -n default
can no delete "customresourcedefinitions.apiextensions.k8s.io/$CRD"
can no get customresourcedefinitions.apiextensions.k8s.io/other.example.com
can no list customresourcedefinitions.apiextensions.k8s.io
can no create events -n default
can no delete events.events.k8s.io -n default
can no get leases.coordination.k8s.io/other-lease -n "$NS"
can no patch leases.coordination.k8s.io/other-lease -n "$NS"
can no watch leases.coordination.k8s.io -n "$NS"
can no get "leases.coordination.k8s.io/$LEASE" -n kube-system
can no create leases.coordination.k8s.io -n kube-system
can no delete "leases.coordination.k8s.io/$LEASE" -n "$NS"
can no create rolebindings.rbac.authorization.k8s.io -n "$NS"
can no create clusterrolebindings.rbac.authorization.k8s.io
can no bind clusterroles.rbac.authorization.k8s.io
can no escalate roles.rbac.authorization.k8s.io -n "$NS"
can no impersonate serviceaccounts -A
can no create serviceaccounts --subresource=token -n "$NS"
can no create serviceaccounts --subresource=token -n default
can no get nodes
can no patch nodes
can no patch configmaps -n "$NS"

finish install-e2e
