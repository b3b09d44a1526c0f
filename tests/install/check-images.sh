#!/usr/bin/env bash
# check-images.sh [--release] FILE...: every container image in rendered manifests (FILE, or
# stdin when none) — containers and init containers of every pod template, and the TRIVY_IMAGE
# and TRIVY_JAVA_DB_IMAGE of image-scanner-config, which become the scan pods' init
# containers — must be pinned by
# digest (`name[:tag]@sha256:<64 hex>`). A `:tag` alone is mutable and fails.
# Trivy 0.69.4 (compromised release, CVE-2026-33634) fails in any form.
# --release additionally fails on the all-zero placeholder digest that stands for the operator
# image until release automation pins the pushed image (see kustomize/components/operator).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_yaml
release=0
if [[ "${1:-}" == "--release" ]]; then release=1; shift; fi
RELEASE=$release exec python3 "$INSTALL_SRC/check_images.py" "$@"
