#!/usr/bin/env bash
# Lint the GitHub Actions workflows (.github/workflows) with actionlint: workflow syntax, job
# dependencies and outputs, expressions and their contexts, `permissions:` scopes, runner labels,
# the inputs of well-known actions, local reusable workflows; and with shellcheck (Debian's,
# installed when missing) the shell of every `run:` block; and that every action is pinned by
# commit SHA. CI here cannot run GitHub Actions, so this is what keeps the release workflow from
# rotting.
#
# actionlint is a Go module: built once with `go install` into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/actionlint-<version>-<key>/actionlint
# where <key> covers the version and the Go version (a rebuild takes no time then).
#
# Usage: actionlint.sh [FILE...]   (default: every workflow in .github/workflows)
# Env:   ACTIONLINT_VERSION (default below), ACTIONLINT (use this binary, build nothing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version="${ACTIONLINT_VERSION:-v1.7.12}"

build() {
  command -v go >/dev/null || die "actionlint.sh: 'go' not found on PATH (actionlint is built from its Go module)"
  local key dir
  key="$( { echo "$version"; go version; } | sha256sum | cut -c1-12)"
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/actionlint-$version-$key"
  if [[ ! -x "$dir/actionlint" ]]; then
    mkdir -p "$(dirname "$dir")"
    # One build per key at a time; a second caller waits, then finds the binary.
    exec {lock_fd}>"$dir.lock"
    flock "$lock_fd"
    if [[ ! -x "$dir/actionlint" ]]; then
      echo "actionlint.sh: building github.com/rhysd/actionlint $version into $dir (once)" >&2
      local tmp start=$SECONDS
      tmp="$(mktemp -d "$(dirname "$dir")/.actionlint-tmp.XXXXXX")"
      # shellcheck disable=SC2064 # expand now: tmp is local
      trap "rm -rf '$tmp'" EXIT
      GOBIN="$tmp" GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
        nice -n 10 go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$version" >&2
      rm -rf "$dir" && mv "$tmp" "$dir"
      echo "actionlint.sh: built in $((SECONDS - start)) s" >&2
    fi
    exec {lock_fd}>&-
  fi
  echo "$dir/actionlint"
}

bin="${ACTIONLINT:-$(build)}"
mkdir -p "$WORK_DIR"
cd "$REPO_ROOT"
if (($# == 0)); then
  shopt -s nullglob
  set -- .github/workflows/*.yml .github/workflows/*.yaml
  (($# > 0)) || die "actionlint.sh: no workflows in .github/workflows"
fi
# shellcheck findings (any level) fail actionlint: install Debian's shellcheck where it is missing,
# so that every machine checks the run: blocks alike.
command -v shellcheck >/dev/null || "$INSTALL_SRC/apt-install.sh" shellcheck >/dev/null \
  || echo "actionlint.sh: could not install shellcheck" >&2
if command -v shellcheck >/dev/null; then
  shell="run: blocks checked with $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
else
  shell="no shellcheck on PATH: run: blocks not checked"
fi
log="$WORK_DIR/actionlint.log"
if "$bin" -no-color "$@" >"$log" 2>&1; then
  pass "actionlint $("$bin" -version | head -1): $# workflow(s) ($shell)"
else
  sed 's/^/    /' "$log"
  fail "actionlint: $*"
fi

# Every action of another repository is pinned by its full commit SHA, with the version tag it
# was taken from in a comment (`uses: owner/repo@<40 hex> # vX.Y.Z`); a docker:// action by
# digest. A tag or a branch can be moved to other code, a commit cannot.
unpinned="$(grep -nE '^[[:space:]]*(-[[:space:]]+)?uses:' "$@" \
  | grep -vE 'uses:[[:space:]]*(\./|docker://[^[:space:]]+@sha256:[0-9a-f]{64}[[:space:]]*$)' \
  | grep -vE 'uses:[[:space:]]*[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}[[:space:]]+#[[:space:]]*v[0-9]+(\.[0-9]+){0,2}[[:space:]]*$' || true)"
if [[ -z "$unpinned" ]]; then
  pass "every action is pinned by commit SHA (# version tag)"
else
  fail "actions not pinned by commit SHA with a '# vX.Y.Z' comment:"
  # shellcheck disable=SC2001 # indent every line
  sed 's/^/    /' <<<"$unpinned"
fi

# actionlint knows the inputs and outputs of popular actions by version tag, not by commit:
# lint a copy with each pin replaced by the major version tag of its comment, so that a wrong
# input name of a pinned action is found as well.
copy="$WORK_DIR/actionlint-by-tag"
rm -rf "$copy" && mkdir -p "$copy/.github/workflows"
for f in "$@"; do
  sed -E 's/@[0-9a-f]{40}([[:space:]]+#[[:space:]]*(v[0-9]+)[.0-9]*)[[:space:]]*$/@\2\1/' "$f" \
    >"$copy/.github/workflows/$(basename "$f")"
done
if (cd "$copy" && "$bin" -no-color .github/workflows/*) >"$log" 2>&1; then
  pass "actionlint with the pins read as their version tags (inputs of known actions)"
else
  sed 's/^/    /' "$log"
  fail "actionlint with the pins read as their version tags (a copy in ${copy#"$REPO_ROOT"/})"
fi
finish actionlint
