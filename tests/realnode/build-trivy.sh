#!/usr/bin/env bash
# Build the real-scanner tools of tests/realnode from the Go module proxy (never a prebuilt
# binary):
#   trivy    trivy v0.74.0, flags as trivy's own release build (goreleaser.yml): CGO off and
#            GOEXPERIMENT=jsonv2 (without it: "encoding/json/v2: build constraints exclude
#            all Go files").
#   trivydb  trivydb/ : writes the offline vulnerability DB (trivydb --help).
#   javadb   javadb/ : writes the offline Java DB and the test JARs (javadb/main.go).
#   coredns  coredns/ : CoreDNS from its module with the cluster DNS plugins only (the real
#            node's cluster DNS).
#   hello    images/hello/ : the Go binary of the test image app:1 (make-images.sh).
#
# Output directory (printed as the last line of stdout; progress goes to stderr):
#   $REALNODE_TRIVY_BIN_DIR if set, else
#   ${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/trivy-<key>/bin
# where <key> covers this script and the Go version. Each binary carries its own key file
# (.<name>.key: the directory key plus the binary's own sources), so editing trivydb/ or
# images/hello/ rebuilds only that binary and never relinks trivy (a minute or more).
# A binary whose key matches is reused as is.
#
# Usage: build-trivy.sh [--print-dir] [trivy|trivydb|javadb|coredns|hello ...]   (default: all)
#   --print-dir: print the directory, build nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

readonly trivy_version=v0.74.0
readonly trivy_pkg=github.com/aquasecurity/trivy/cmd/trivy

command -v go >/dev/null || { echo "build-trivy.sh: 'go' not found on PATH" >&2; exit 1; }
# Builds with the local toolchain only: a go.mod asking for a newer Go must fail, not make
# the go command download a prebuilt toolchain.
export GOTOOLCHAIN=local GOWORK=off

print_dir=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=true ;;
    trivy|trivydb|javadb|coredns|hello) targets+=("$arg") ;;
    *) echo "usage: build-trivy.sh [--print-dir] [trivy|trivydb|javadb|coredns|hello ...]" >&2; exit 2 ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(trivy trivydb javadb coredns hello)

dir_key="$( { go version; cat build-trivy.sh; } | sha256sum | cut -c1-16)"
bin_dir="${REALNODE_TRIVY_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/trivy-$dir_key/bin}"

if $print_dir; then
  echo "$bin_dir"
  exit 0
fi

# key_of NAME: the key a fresh build of NAME would have.
key_of() {
  case "$1" in
    trivy) echo "$dir_key" ;;
    trivydb|javadb|coredns|hello)
      local src="$1"
      [[ "$1" == hello ]] && src=images/hello
      { echo "$dir_key"; find "$src" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) |
          LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16 ;;
  esac
}

up_to_date() { [[ -x "$bin_dir/$1" && "$(cat "$bin_dir/.$1.key" 2>/dev/null)" == "$(key_of "$1")" ]]; }

mkdir -p "$bin_dir"
# One build at a time per directory: a second caller (up.sh and check-scanner.sh started
# together) waits, then finds the binaries up to date instead of building trivy twice.
exec {lock_fd}> "$bin_dir/.lock"
flock "$lock_fd"
tmp="$(mktemp -d "$bin_dir/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# install NAME: moves the fresh $tmp/NAME into place, then its key (a rename each, so a
# concurrent build of the same key never sees a half-written binary).
install_bin() {
  mv -f "$tmp/$1" "$bin_dir/$1"
  key_of "$1" > "$tmp/.$1.key"
  mv -f "$tmp/.$1.key" "$bin_dir/.$1.key"
}

# nice: this machine is shared with other builds.
for t in "${targets[@]}"; do
  if up_to_date "$t"; then
    touch "$bin_dir/.$t.key" 2>/dev/null || true   # "last used", for pruning below
    continue
  fi
  start=$SECONDS
  case "$t" in
    trivy)
      echo "build-trivy.sh: building trivy $trivy_version into $bin_dir (key $dir_key); 20+ min on a busy 2-core machine the first time" >&2
      # Exactly the flags of the documented by-hand build (docs: real-trivy-notes.md), so that
      # any earlier build with them has filled the Go build cache. `go install pkg@version`
      # ignores the current module; GOBIN is a private directory, never the final one.
      (cd "$tmp" && mkdir gobin &&
        CGO_ENABLED=0 GOEXPERIMENT=jsonv2 GOFLAGS=-buildvcs=false GOBIN="$tmp/gobin" nice -n 10 go install -trimpath \
          -ldflags "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=${trivy_version#v}" \
          "$trivy_pkg@$trivy_version")
      mv "$tmp/gobin/trivy" "$tmp/trivy"
      "$tmp/trivy" --version >&2
      ;;
    trivydb)
      # Same CGO/GOEXPERIMENT/-trimpath as trivy, and (trivydb/go.mod) the same versions of
      # the modules both use: their compiled packages come from trivy's build cache.
      (cd trivydb &&
        CGO_ENABLED=0 GOEXPERIMENT=jsonv2 GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build -trimpath \
          -ldflags "-s -w" -o "$tmp/trivydb" .)
      ;;
    javadb)
      # Like trivydb: trivy-java-db and the sqlite driver at the versions trivy pins.
      (cd javadb &&
        CGO_ENABLED=0 GOEXPERIMENT=jsonv2 GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build -trimpath \
          -ldflags "-s -w" -o "$tmp/javadb" .)
      ;;
    coredns)
      (cd coredns &&
        CGO_ENABLED=0 GOEXPERIMENT='' GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build -trimpath \
          -ldflags "-s -w" -o "$tmp/coredns" .)
      ;;
    hello)
      # A plain static build (no GOEXPERIMENT): what an ordinary Go image would contain.
      (cd images/hello &&
        CGO_ENABLED=0 GOEXPERIMENT='' GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build -trimpath \
          -ldflags "-s -w" -o "$tmp/hello" .)
      ;;
  esac
  install_bin "$t"
  echo "build-trivy.sh: $t built in $((SECONDS - start)) s" >&2
done

rm -rf "$tmp"
trap - EXIT
# Prune the builds of other keys that no checkout used for 14 days: every key file old, and
# no build running in them (a .tmp.* directory).
if [[ -z "${REALNODE_TRIVY_BIN_DIR:-}" ]]; then
  for d in "$(dirname "$(dirname "$bin_dir")")"/trivy-*/bin; do
    [[ "$d" != "$bin_dir" && -d "$d" ]] || continue
    compgen -G "$d/.*.key" >/dev/null || continue
    if compgen -G "$d/.tmp.*" >/dev/null; then continue; fi
    if [[ -z "$(find "$d" -maxdepth 1 -name '.*.key' -mtime -15 -print -quit)" ]]; then
      rm -rf "$(dirname "$d")"
    fi
  done
fi
echo "$bin_dir"
