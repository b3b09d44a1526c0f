# Shared helpers of the install checks. Source, don't run.
# shellcheck shell=bash

INSTALL_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INSTALL_SRC/../.." && pwd)"
KUSTOMIZE_DIR="$REPO_ROOT/kustomize"
# Scratch space of the checks (git-ignored, under target/).
WORK_DIR="$REPO_ROOT/target/install"

FAILURES=0
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILURES=$((FAILURES + 1)); }
die() { printf 'ERROR %s\n' "$*" >&2; exit 2; }
# finish NAME: summary line, exit status 1 when anything failed.
finish() {
  if (( FAILURES > 0 )); then
    printf '%s: %d check(s) FAILED\n' "$1" "$FAILURES"
    exit 1
  fi
  printf '%s: all checks passed\n' "$1"
}

# The kubectl to render with: the local control plane's (same version as the cluster) when
# built, else the one on PATH. `kubectl kustomize` is kustomize built into kubectl.
pick_kubectl() {
  if [[ -n "${KUBECTL:-}" ]]; then
    echo "$KUBECTL"
  elif [[ -x "$REPO_ROOT/target/cluster/bin/kubectl" ]]; then
    echo "$REPO_ROOT/target/cluster/bin/kubectl"
  elif command -v kubectl >/dev/null; then
    command -v kubectl
  else
    die "no kubectl: run make cluster-build, or put kubectl on PATH, or set KUBECTL"
  fi
}

# ensure_python_yaml: the checks parse YAML with python3 + PyYAML (Debian: python3-yaml).
ensure_python_yaml() {
  command -v python3 >/dev/null || die "python3 is required"
  python3 -c 'import yaml' 2>/dev/null && return 0
  "$INSTALL_SRC/apt-install.sh" python3-yaml
  python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml after installing python3-yaml"
}
