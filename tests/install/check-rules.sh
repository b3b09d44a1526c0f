#!/usr/bin/env bash
# PrometheusRule and dashboard query checks: extracts the rendered PrometheusRule's `spec` (kustomize/, the default
# installation) into a Prometheus rule file, runs `promtool check rules` on it and
# `promtool test rules` with tests/install/prometheus/rules.test.yaml (firing and not firing of
# every alert), and parses every query of the Grafana dashboard. Installs promtool when missing (ensure-promtool.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_yaml
PROMTOOL="$("$INSTALL_SRC/ensure-promtool.sh")"
KUBECTL="$(pick_kubectl)"
OUT="$WORK_DIR/rules"
rm -rf "$OUT"; mkdir -p "$OUT"

"$KUBECTL" kustomize "$KUSTOMIZE_DIR" >"$OUT/default.yaml" || die "kubectl kustomize kustomize/ failed"
python3 - "$OUT/default.yaml" "$OUT/rules.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"want exactly one PrometheusRule in the default installation, found {len(rules)}")
yaml.safe_dump(rules[0]["spec"], open(sys.argv[2], "w"), sort_keys=False)
PY
pass "extracted the PrometheusRule spec to ${OUT#"$REPO_ROOT"/}/rules.yaml ($(grep -c '^ *- alert:' "$OUT/rules.yaml") alerts)"

if "$PROMTOOL" check rules "$OUT/rules.yaml" >"$OUT/check.log" 2>&1; then
  pass "promtool check rules: $(grep -o '[0-9]* rules found' "$OUT/check.log")"
else
  fail "promtool check rules:"; sed 's/^/    /' "$OUT/check.log"
fi
cp "$INSTALL_SRC/prometheus/rules.test.yaml" "$OUT/"
if (cd "$OUT" && "$PROMTOOL" test rules rules.test.yaml) >"$OUT/test.log" 2>&1; then
  pass "promtool test rules tests/install/prometheus/rules.test.yaml ($(grep -c 'alertname:' "$OUT/rules.test.yaml") alert evaluations)"
else
  fail "promtool test rules:"; sed 's/^/    /' "$OUT/test.log"
fi
# The dashboard's queries are valid PromQL: check them as recording rules (Grafana's variables
# replaced by sample values).
python3 - "$KUSTOMIZE_DIR/components/dashboard/image-scanner.json" "$OUT/dashboard-rules.yaml" <<'PY'
import json, sys, yaml
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
subst = lambda e: e.replace("$__rate_interval", "5m").replace("$topk", "10")
rules = [{"record": f"dashboard:query_{i}", "expr": subst(e)} for i, e in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
if "$PROMTOOL" check rules "$OUT/dashboard-rules.yaml" >"$OUT/dashboard-check.log" 2>&1; then
  pass "dashboard queries are valid PromQL ($(grep -o '[0-9]* rules found' "$OUT/dashboard-check.log"))"
else
  fail "dashboard queries:"; sed 's/^/    /' "$OUT/dashboard-check.log"
fi
# Every alert has a test where it fires and one where it does not.
for alert in $(grep -o 'alert: [A-Za-z]*' "$OUT/rules.yaml" | cut -d' ' -f2); do
  python3 - "$OUT/rules.test.yaml" "$alert" <<'PY' && pass "$alert: tested firing and not firing" || fail "$alert: needs a firing and a not-firing test"
import sys, yaml
t = yaml.safe_load(open(sys.argv[1]))
evals = [e for test in t["tests"] for e in test.get("alert_rule_test", []) if e["alertname"] == sys.argv[2]]
sys.exit(0 if any(e.get("exp_alerts") for e in evals) and any(not e.get("exp_alerts") for e in evals) else 1)
PY
done
finish check-rules
