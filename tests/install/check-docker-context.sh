#!/usr/bin/env bash
# The Dockerfile's build context, as .dockerignore admits it ("*", then "!path" exceptions), is a
# complete workspace: a copy of just those files resolves with `cargo metadata --locked`. Adding
# a workspace member without admitting it breaks the image build, which nothing else here runs
# (there is no Docker engine; the build itself is tested outside Docker by build-static.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
[[ "$(grep -vE '^\s*(#|$)' "$REPO_ROOT/.dockerignore" | head -n 1)" == '*' ]] ||
  die ".dockerignore must start by excluding everything (*) for this check"
while read -r path; do
  path="${path%/}"
  [[ -e "$REPO_ROOT/$path" ]] || { fail ".dockerignore admits $path, which does not exist"; continue; }
  mkdir -p "$ctx/$(dirname "$path")"
  (cd "$REPO_ROOT" && git ls-files -z -- "$path" | tar --null -T - -cf -) | tar -xf - -C "$ctx"
done < <(sed -n 's/^!\(.*\)$/\1/p' "$REPO_ROOT/.dockerignore")
if out="$(cd "$ctx" && cargo metadata --locked --format-version 1 --no-deps 2>&1 >/dev/null)"; then
  pass "the Docker build context ($(find "$ctx" -type f | wc -l) files) is a complete workspace"
else
  fail "the Docker build context is not a complete workspace: $(head -n 2 <<<"$out" | tr '\n' ' ')"
fi
finish check-docker-context
