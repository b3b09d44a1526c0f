#!/usr/bin/env bash
# Checks the image binary built by build-static.sh (make image-binary): statically linked (file
# and ldd agree), runs in an empty environment (as in the distroless image: no libc, no
# /etc/passwd entry needed), `--help` exits 0 and `crd` prints the ContainerImageScan CRD,
# identical to crds/containerimagescans.stas.statnett.no.yaml; and the binary accepts the
# installed configuration: the Deployment's args and the image-scanner-config ConfigMap as
# environment (as envFrom gives it), checked with the `check-config` subcommand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN="${1:-$REPO_ROOT/target/image/image-scanner-operator}"
[[ -x "$BIN" ]] || die "no binary at $BIN (run make image-binary)"
mkdir -p "$WORK_DIR"

desc="$(file -b "$BIN")"
if grep -qE 'statically linked|static-pie linked' <<<"$desc" && ! grep -q 'interpreter' <<<"$desc"; then
  pass "file: ${desc%%, BuildID*}"
else
  fail "file does not say statically linked: $desc"
fi
ldd_out="$(ldd "$BIN" 2>&1 || true)"
if grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
  pass "ldd: $(head -1 <<<"$ldd_out" | sed 's/^[[:space:]]*//')"
else
  fail "ldd lists libraries: $ldd_out"
fi
if env -i "$BIN" --help >"$WORK_DIR/help.txt" 2>&1; then
  pass "image-scanner-operator --help exits 0 ($(wc -l <"$WORK_DIR/help.txt") lines)"
else
  fail "image-scanner-operator --help failed: $(head -5 "$WORK_DIR/help.txt")"
fi
if env -i "$BIN" crd >"$WORK_DIR/crd.yaml" 2>"$WORK_DIR/crd.err"; then
  if grep -q '^kind: CustomResourceDefinition' "$WORK_DIR/crd.yaml" \
     && grep -q 'name: containerimagescans.stas.statnett.no' "$WORK_DIR/crd.yaml"; then
    pass "image-scanner-operator crd prints the ContainerImageScan CRD"
  else
    fail "image-scanner-operator crd printed no ContainerImageScan CRD"
  fi
  if cmp -s "$WORK_DIR/crd.yaml" "$REPO_ROOT/crds/containerimagescans.stas.statnett.no.yaml"; then
    pass "its output equals crds/containerimagescans.stas.statnett.no.yaml"
  else
    fail "its output differs from crds/containerimagescans.stas.statnett.no.yaml (regenerate and commit it)"
  fi
else
  fail "image-scanner-operator crd failed: $(cat "$WORK_DIR/crd.err")"
fi
for plural in vulnerabilityexceptions clustervulnerabilityexceptions; do
  if env -i "$BIN" crd "$plural" >"$WORK_DIR/crd-$plural.yaml" 2>"$WORK_DIR/crd.err" \
     && cmp -s "$WORK_DIR/crd-$plural.yaml" "$REPO_ROOT/crds/$plural.stas.statnett.no.yaml"; then
    pass "image-scanner-operator crd $plural equals crds/$plural.stas.statnett.no.yaml"
  else
    fail "image-scanner-operator crd $plural differs from crds/ or failed: $(head -3 "$WORK_DIR/crd.err")"
  fi
done
# The installed configuration (rendered default installation) must be valid for this binary.
ensure_python_yaml
KUBECTL="$(pick_kubectl)"
if "$KUBECTL" kustomize "$KUSTOMIZE_DIR" >"$WORK_DIR/binary-default.yaml" 2>"$WORK_DIR/binary-default.err"; then
  mapfile -t installed < <(python3 - "$WORK_DIR/binary-default.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "image-scanner-controller-manager")
c = dep["spec"]["template"]["spec"]["containers"][0]
cm_name = c["envFrom"][0]["configMapRef"]["name"]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
print("ARGS=" + " ".join(c.get("args", [])))
for k, v in cm["data"].items():
    print(f"{k}={v}")
print("POD_NAME=image-scanner-controller-manager-0")
print("POD_NAMESPACE=image-scanner")
PY
)
  args="${installed[0]#ARGS=}"
  # shellcheck disable=SC2086 # the args are words
  if env -i "${installed[@]:1}" "$BIN" $args check-config >"$WORK_DIR/check-config.txt" 2>&1; then
    pass "the binary accepts the installed configuration (args '$args', image-scanner-config as env)"
  else
    fail "the binary rejects the installed configuration (args '$args' + image-scanner-config env): $(tail -2 "$WORK_DIR/check-config.txt")"
  fi
else
  fail "kubectl kustomize kustomize/: $(cat "$WORK_DIR/binary-default.err")"
fi
finish check-binary
