#!/usr/bin/env bash
# RBAC smoke test: runs the operator on the host with target/e2e/operator.kubeconfig (the
# installed ServiceAccount's token, so exactly the installed RBAC; make install-e2e writes it)
# and target/e2e/operator.env (the installed configuration) against three Deployments: one whose
# scan succeeds, one whose scan Job fails (an Event is recorded), and one whose pods name
# imagePullSecrets, scanned by a Job in its own namespace with those secret names (scan Job
# placement, KEP-2535; the operator copies trivy-job-config into it). Passes when every CIS gets
# a result, the private image's Job ran in the workload namespace and the others in the scan
# namespace, the Lease is held by this process, an Event was written, and the operator log has
# no "forbidden"/403. Evidence that the installed verbs are sufficient; docs/install.md explains
# how the verbs were chosen. OPERATOR_BIN picks the binary (default: target/image/, from
# make image-binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$REPO_ROOT/target/cluster"
KUBECTL="$STATE/bin/kubectl"
E2E_DIR="$REPO_ROOT/target/e2e"
BIN="${OPERATOR_BIN:-$REPO_ROOT/target/image/image-scanner-operator}"
[[ -x "$KUBECTL" && -f "$STATE/kubeconfig" ]] || die "no running cluster (run make cluster-up)"
[[ -f "$E2E_DIR/operator.kubeconfig" && -f "$E2E_DIR/operator.env" ]] || die "run make install-e2e first"
[[ -x "$BIN" ]] || die "no operator binary at $BIN (make image-binary, or set OPERATOR_BIN)"
kc() { "$KUBECTL" --kubeconfig "$STATE/kubeconfig" "$@"; }
NS=e2e-rbac-smoke
LOG="$WORK_DIR/rbac-smoke-operator.log"
mkdir -p "$WORK_DIR"
RUN="$(date +%s)"  # fresh image names: fresh scan Jobs every run
GOOD="registry.test/rbac-smoke-$RUN/good:1.0"
BAD="registry.test/exit-code-1/rbac-smoke-$RUN:1.0"
PRIVATE="registry.test/rbac-smoke-$RUN/private:1.0"
PULL_SECRET=rbac-smoke-pull  # only its name matters: kwok pulls nothing, the operator reads no Secret
for image in "$GOOD" "$PRIVATE"; do
  "$REPO_ROOT/tests/cluster/serve-log.sh" "$image" \
    "$REPO_ROOT/tests/fixtures/upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json" >/dev/null
done

kc delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kc create namespace "$NS" >/dev/null
for pair in "good=$GOOD" "bad=$BAD"; do
  kc -n "$NS" create deployment "${pair%%=*}" --image="${pair#*=}" >/dev/null
done
# With imagePullSecrets from its first pod on (every pod of the digest names them: the Job goes
# to the workload namespace first).
kc -n "$NS" create deployment private --image="$PRIVATE" --dry-run=client -o json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["template"]["spec"]["imagePullSecrets"]=[{"name": sys.argv[1]}]; print(json.dumps(d))' "$PULL_SECRET" \
  | kc -n "$NS" create -f - >/dev/null

pid=""
# stop_operator: SIGTERM, then up to 20 s (the Deployment's grace period is 15 s), then SIGKILL.
stop_operator() {
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || { pid=""; return 0; }
  local i
  for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    return 1
  fi
  wait "$pid" 2>/dev/null || true
  pid=""
}
cleanup() {
  stop_operator || true
  kc delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The installed configuration, as the Deployment's envFrom would give it; local ports.
(
  set -a; source "$E2E_DIR/operator.env"; set +a
  export KUBECONFIG="$E2E_DIR/operator.kubeconfig" POD_NAME=rbac-smoke-operator \
         METRICS_BIND_ADDRESS=127.0.0.1:0 HEALTH_PROBE_BIND_ADDRESS=127.0.0.1:0 \
         SCAN_NAMESPACE_INCLUDE_REGEXP="^$NS\$" LOG_FORMAT=console LEADER_ELECT=true \
         LOG_LEVEL=info,image_scanner=debug
  exec "$BIN"
) >"$LOG" 2>&1 &
pid=$!

deadline=$((SECONDS + ${RBAC_SMOKE_TIMEOUT:-120}))
good="" bad="" private=""
while (( SECONDS < deadline )); do
  json="$(kc -n "$NS" get containerimagescans -o json 2>/dev/null || echo '{"items":[]}')"
  read -r good bad private < <(python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
def state(prefix):
    for i in items:
        if i["spec"].get("name", "").endswith(prefix):
            conds = {c["type"]: c["status"] for c in (i.get("status") or {}).get("conditions", [])}
            if conds.get("Stalled") == "True":
                return "failed"
            if (i.get("status") or {}).get("lastSuccessfulScanTime"):
                return "scanned"
            return "pending"
    return "none"
print(state("/good"), state("rbac-smoke-" + sys.argv[1]), state("/private"))' "$RUN" <<<"$json")
  [[ "$good" == scanned && "$bad" == failed && "$private" == scanned ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 2
done
[[ "$good" == scanned ]] && pass "CIS of $GOOD: scan result written" || fail "CIS of $GOOD: $good"
[[ "$bad" == failed ]] && pass "CIS of $BAD: failed scan recorded (Stalled=True)" || fail "CIS of $BAD: $bad"
[[ "$private" == scanned ]] && pass "CIS of $PRIVATE (imagePullSecrets): scan result written" || fail "CIS of $PRIVATE: $private"
# Where the scan Jobs ran: the private image's in its own namespace, with the pod's pull secret
# names and service account, no token, trivy-job-config copied in; the others in the scan
# namespace, as before.
placement="$(kc get jobs.batch -A -l app.kubernetes.io/managed-by=image-scanner -o json 2>/dev/null | python3 -c '
import json, sys
ns, secret, run = sys.argv[1], sys.argv[2], sys.argv[3]
problems, seen = [], {"good": 0, "bad": 0, "private": 0}
for j in json.load(sys.stdin)["items"]:
    image = j["metadata"].get("annotations", {}).get("image-scanner.statnett.no/image", "")
    which = "private" if image.endswith("rbac-smoke-" + run + "/private") else "good" if image.endswith("rbac-smoke-" + run + "/good")         else "bad" if image.endswith("rbac-smoke-" + run) else None
    if which is None:
        continue
    seen[which] += 1
    where, name = j["metadata"]["namespace"], j["metadata"]["name"]
    pod = j["spec"]["template"]["spec"]
    env = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
    if which == "private":
        want = (ns, [{"name": secret}], "default")
        got = (where, pod.get("imagePullSecrets"), pod.get("serviceAccountName"))
        if got != want or not name.startswith("image-scan-") or pod.get("automountServiceAccountToken") is not False                 or "TRIVY_SERVER" not in env:
            problems.append(f"{which} Job {where}/{name}: namespace, secrets, SA {got}, want {want}; name image-scan-*, "
                            f"no token, TRIVY_SERVER in env ({sorted(env)})")
    elif where != "image-scanner" or pod.get("imagePullSecrets"):
        problems.append(f"{which} Job {where}/{name}: want the scan namespace, no imagePullSecrets")
problems += [f"no scan Job of {w} found" for w in ("good", "private") if seen[w] == 0]
print("; ".join(problems) or "ok")' "$NS" "$PULL_SECRET" "$RUN" 2>&1)"
[[ "$placement" == ok ]] \
  && pass "scan Job placement: $PRIVATE in $NS with imagePullSecrets [$PULL_SECRET], the others in image-scanner" \
  || fail "scan Job placement: $placement"
holder="$(kc -n image-scanner get lease 398aa7bc.statnett.no -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
[[ "$holder" == rbac-smoke-operator ]] && pass "Lease 398aa7bc.statnett.no held by the operator" || fail "Lease holder is '$holder'"
events="$(kc -n "$NS" get events.events.k8s.io -o jsonpath='{range .items[?(@.reportingController=="image-scanner-operator")]}{.reason}{" "}{end}' 2>/dev/null || true)"
[[ -n "$events" ]] && pass "Events written by the operator: $events" || fail "no Event written by the operator"
kill -0 "$pid" 2>/dev/null && pass "operator still running" || fail "operator exited: $(tail -3 "$LOG")"
# The workloads go away: their CIS and scan Jobs are cleaned up (deletes).
kc -n "$NS" delete deployment good bad private --wait=false >/dev/null
for _ in $(seq 30); do
  [[ -z "$(kc -n "$NS" get containerimagescans -o name 2>/dev/null)" ]] && break
  sleep 1
done
[[ -z "$(kc -n "$NS" get containerimagescans -o name 2>/dev/null)" ]] \
  && pass "CIS gone after their workloads were deleted" || fail "CIS left after their workloads were deleted"
sleep 3
verbs="$(sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -oE 'verb="?[a-z_]+"? object' | sed -E 's/verb="?([a-z_]+)"? object/\1/' | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')"
pass "commands executed with the installed RBAC: ${verbs%, }"
if stop_operator; then
  pass "operator stopped within 20 s of SIGTERM"
else
  fail "operator still running 20 s after SIGTERM (killed); log tail: $(tail -1 "$LOG" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-160)"
fi
if grep -qiE 'forbidden|\b403\b' "$LOG"; then
  fail "operator log mentions forbidden/403:"; grep -iE 'forbidden|\b403\b' "$LOG" | head -5 | sed 's/^/    /'
else
  pass "no forbidden/403 in the operator log ($(wc -l <"$LOG") lines, ${LOG#"$REPO_ROOT"/})"
fi
finish rbac-smoke
