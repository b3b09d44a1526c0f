#!/usr/bin/env bash
# Static checks of the kustomizations (no cluster needed):
#  * kubectl kustomize renders the default installation, kustomize/base, the e2e and real-node
#    overlays, every component (each in a throw-away kustomization of its own) and the fixtures
#    (tests/install/fixtures: the upstream README's override examples, all optional components,
#    the scan Job placement variants of docs/install.md);
#  * every image of every rendering but the real-node overlay's is pinned by digest
#    (check-images.sh);
#  * the release pin (tests/install/operator-image.sh pin, as the release workflow runs it) on a
#    copy of kustomize/: the release gate fails on the placeholder digest and passes once pinned;
#  * the CRD copies in kustomize/components/crd equal crds/*.yaml;
#  * the contract of check_render.py: objects and names, ConfigMap keys (upstream §13.5),
#    Deployment shape, restricted pod security, NetworkPolicy, exact RBAC rules, the README's
#    `configMapGenerator ... behavior: merge` examples.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_yaml
KUBECTL="$(pick_kubectl)"
OUT="$WORK_DIR/render"
rm -rf "$OUT"; mkdir -p "$OUT"
echo "check-render: rendering with $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | grep -i kustomize || true))"

render() { # render NAME DIR
  if "$KUBECTL" kustomize "$2" >"$OUT/$1.yaml" 2>"$OUT/$1.err"; then
    pass "kubectl kustomize ${2#"$REPO_ROOT"/} ($(grep -c '^kind:' "$OUT/$1.yaml") objects)"
    if "$INSTALL_SRC/check-images.sh" "$OUT/$1.yaml" >"$OUT/$1.images" 2>&1; then
      pass "$1: all $(grep -c '^PASS' "$OUT/$1.images") container images pinned by digest"
    else
      fail "$1: images:"; grep -v '^PASS' "$OUT/$1.images" | sed 's/^/    /'
    fi
  else
    fail "kubectl kustomize ${2#"$REPO_ROOT"/}: $(cat "$OUT/$1.err")"
    : >"$OUT/$1.yaml"
  fi
}

render default "$KUSTOMIZE_DIR"
render base "$KUSTOMIZE_DIR/base"
render e2e "$KUSTOMIZE_DIR/overlays/e2e"
render readme "$INSTALL_SRC/fixtures/readme-overlay"
render readme-trivy "$INSTALL_SRC/fixtures/readme-trivy-job-config"
render components "$INSTALL_SRC/fixtures/components"
render workload-scan-per-namespace "$INSTALL_SRC/fixtures/workload-scan-per-namespace"
render scan-namespace-only "$INSTALL_SRC/fixtures/scan-namespace-only"
# The real-node overlay names the node's local images by tag: tests/realnode/install.sh pins
# them by digest in a kustomization of its own, so only its objects are checked here.
if "$KUBECTL" kustomize "$KUSTOMIZE_DIR/overlays/real-node" >"$OUT/real-node.yaml" 2>"$OUT/real-node.err"; then
  pass "kubectl kustomize kustomize/overlays/real-node ($(grep -c '^kind:' "$OUT/real-node.yaml") objects; images pinned by tests/realnode/install.sh)"
else
  fail "kubectl kustomize kustomize/overlays/real-node: $(cat "$OUT/real-node.err")"
  : >"$OUT/real-node.yaml"
fi
# Each component alone, in a kustomization that sets the namespace as kustomize/base does.
for dir in "$KUSTOMIZE_DIR"/components/*/; do
  name="$(basename "$dir")"
  tmp="$OUT/component-$name"
  mkdir -p "$tmp"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: image-scanner\ncomponents:\n  - %s\n' \
    "$(realpath --relative-to="$tmp" "$dir")" >"$tmp/kustomization.yaml"
  if "$KUBECTL" kustomize "$tmp" >"$OUT/component-$name.yaml" 2>"$OUT/component-$name.err"; then
    pass "kubectl kustomize components/$name (alone: $(grep -c '^kind:' "$OUT/component-$name.yaml") objects)"
  else
    fail "kubectl kustomize components/$name (alone): $(cat "$OUT/component-$name.err")"
  fi
done

# The release workflow's pin step on a copy of kustomize/: with the placeholder digest the
# release gate (check-images.sh --release, make install-release-check) fails; after
# `operator-image.sh pin` it passes and the Deployment runs exactly name@digest.
pin_copy="$OUT/release-pin"
mkdir -p "$pin_copy" && cp -r "$KUSTOMIZE_DIR" "$pin_copy/"
pin_k="$pin_copy/kustomize/components/operator/kustomization.yaml"
zeros="sha256:$(printf '0%.0s' {1..64})"
fake="sha256:$(printf '%s' release-pin-check | sha256sum | cut -c1-64)"
if KUSTOMIZATION="$pin_k" "$INSTALL_SRC/operator-image.sh" pin "$zeros" >/dev/null \
   && "$KUBECTL" kustomize "$pin_copy/kustomize" >"$OUT/release-unpinned.yaml" 2>&1 \
   && ! "$INSTALL_SRC/check-images.sh" --release "$OUT/release-unpinned.yaml" >"$OUT/release-unpinned.images" 2>&1 \
   && grep -q '^FAIL .*placeholder digest' "$OUT/release-unpinned.images"; then
  pass "release gate: check-images.sh --release fails on the placeholder digest"
else
  fail "release gate: check-images.sh --release does not fail on the placeholder digest: $(tail -3 "$OUT/release-unpinned.images" 2>/dev/null)"
fi
if ref="$(KUSTOMIZATION="$pin_k" "$INSTALL_SRC/operator-image.sh" pin "$fake")" \
   && "$KUBECTL" kustomize "$pin_copy/kustomize" >"$OUT/release-pinned.yaml" 2>&1 \
   && "$INSTALL_SRC/check-images.sh" --release "$OUT/release-pinned.yaml" >"$OUT/release-pinned.images" 2>&1 \
   && grep -qx "        image: $ref" "$OUT/release-pinned.yaml" \
   && diff <(sed "s/${zeros#sha256:}/${fake#sha256:}/" "$OUT/release-unpinned.yaml") "$OUT/release-pinned.yaml" >/dev/null; then
  pass "release pin: operator-image.sh pin makes the release gate pass; the Deployment runs $ref, nothing else changed"
else
  fail "release pin: after operator-image.sh pin: $(grep -v '^PASS' "$OUT/release-pinned.images" 2>/dev/null | head -3)"
fi

for crd in "$REPO_ROOT"/crds/*.yaml; do
  if cmp -s "$crd" "$KUSTOMIZE_DIR/components/crd/$(basename "$crd")"; then
    pass "kustomize/components/crd holds the same $(basename "$crd") as crds/"
  else
    fail "kustomize/components/crd/$(basename "$crd") differs from crds/ or is missing (run make install-sync-crd)"
  fi
done

if python3 "$INSTALL_SRC/check_render.py" "$OUT" "$REPO_ROOT" >"$OUT/contract.log" 2>&1; then
  pass "contract (check_render.py): $(grep -c '^PASS' "$OUT/contract.log") checks"
else
  grep -v '^PASS' "$OUT/contract.log" | sed 's/^/    /'
  fail "contract (check_render.py)"
fi
[[ -n "${VERBOSE:-}" ]] && cat "$OUT/contract.log"
finish check-render
