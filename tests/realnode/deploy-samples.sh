#!/usr/bin/env bash
# Deploy private test images on the real node, each as a Deployment of tests/run/real-samples.yaml
# pulled with the namespace's imagePullSecret registry-credentials (created here too):
#
#   deploy-samples.sh NAMESPACE NAME...   NAME: app, clean or java (realnode.env's <NAME>_IMAGE)
#
# Used by make run (tests/run/run.sh) and make real-install-check (install-check.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

[[ $# -ge 2 ]] || { echo "usage: deploy-samples.sh NAMESPACE NAME..." >&2; exit 2; }
[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (make cluster-up)"
# shellcheck source=/dev/null
source "$RN_ENV"
KUBECTL="$STATE/bin/kubectl"
ns="$1"; shift

kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
rn_pull_secret "$ns"
for name in "$@"; do
  image_var="${name^^}_IMAGE"
  [[ -n "${!image_var:-}" ]] || die "no $image_var in $RN_ENV"
  sed -e "s|@NAME@|$name|g" -e "s|@NAMESPACE@|$ns|g" -e "s|@IMAGE@|${!image_var}|g" \
    -e "s|@TAINT@|$TAINT_KEY|g" "$REPO_ROOT/tests/run/real-samples.yaml" | kc apply -f - >/dev/null
done
