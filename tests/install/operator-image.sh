#!/usr/bin/env bash
# The operator image, as kustomize/components/operator/kustomization.yaml defines it in its one
# `images:` entry (the only place the image is named; the release workflow, the real-node install
# and the checks read it from there):
#
#   operator-image.sh name                 print the image name (newName), e.g. ghcr.io/statnett/image-scanner
#   operator-image.sh ref                  print name@digest as the kustomization pins it
#   operator-image.sh pin sha256:<64 hex>  replace the pinned digest (the RELEASE-PIN), print name@digest
#
# Fails (exit 1, a message on stderr) when the entry is not exactly {name, newName, digest} or
# the digest is not sha256:<64 hex>. Env: KUSTOMIZATION (another copy of that file).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_yaml
KUSTOMIZATION="${KUSTOMIZATION:-$KUSTOMIZE_DIR/components/operator/kustomization.yaml}" \
  exec python3 "$INSTALL_SRC/operator_image.py" "$@"
