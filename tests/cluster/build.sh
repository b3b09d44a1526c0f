#!/usr/bin/env bash
# Build the local control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler as one multi-call binary `kube`, plus etcd, kwok, a kubectl of
# the same version as the server and the real node's kubelet and kube-proxy) from the Go module in this directory, and copy
# kwok's Logs CRD next to them. Everything comes from the Go module proxy.
#
# Output directory (printed as the last line of stdout):
#   $CLUSTER_BIN_DIR if set, else
#   ${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/cluster-<hash>/bin
# where <hash> covers go.mod, go.sum, this script, the module's own Go sources
# and the Go version. A directory that already holds a complete build for the
# same hash is reused as is (a rebuild takes no time then).
#
# Usage: build.sh [--print-dir]   (--print-dir: print the directory, build nothing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH" >&2; exit 1; }

key="$( { go version; cat go.mod go.sum build.sh; find cmd -name '*.go' -type f | LC_ALL=C sort | xargs cat; } \
        | sha256sum | cut -c1-16)"
bin_dir="${CLUSTER_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/cluster-$key/bin}"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$bin_dir"
  exit 0
fi

up_to_date() { [[ -f "$bin_dir/.build-key" && "$(cat "$bin_dir/.build-key")" == "$key" ]]; }
if up_to_date; then
  touch "$bin_dir/.build-key" 2>/dev/null || true   # "last used", for pruning below
  echo "$bin_dir"
  exit 0
fi
# One build per key at a time: a second caller (CI's early background build and make test's
# cluster-up) waits for the first, then finds its result.
mkdir -p "$(dirname "$bin_dir")"
exec {lock_fd}> "$bin_dir.lock"
flock "$lock_fd"
if up_to_date; then
  echo "$bin_dir"
  exit 0
fi

modver() { go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$1"; }
k8s_ver="$(modver k8s.io/kubernetes)"
etcd_ver="$(modver go.etcd.io/etcd/server/v3)"
kwok_ver="$(modver sigs.k8s.io/kwok)"
# Release time of the k8s module as published by the proxy: deterministic build date.
build_date="$(go mod download -json "k8s.io/kubernetes@$k8s_ver" | sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' | head -1)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
major="${k8s_ver#v}"; major="${major%%.*}"
minor="${k8s_ver#v*.}"; minor="${minor%%.*}"

ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$k8s_ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitCommit=go-module-$k8s_ver -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

mkdir -p "$(dirname "$bin_dir")"
tmp="$(mktemp -d "$(dirname "$bin_dir")/.bin-tmp.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

echo "build.sh: building k8s $k8s_ver, etcd $etcd_ver, kwok $kwok_ver into $bin_dir (key $key)" >&2
start=$SECONDS
# nice: this machine is shared with other builds.
b() { nice -n 10 go build -trimpath "$@"; }
b -ldflags "$ld" -o "$tmp/kube" ./cmd/kube
echo "build.sh: kube done after $((SECONDS - start)) s" >&2
b -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
echo "build.sh: etcd done after $((SECONDS - start)) s" >&2
b -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_ver#v}" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
echo "build.sh: kwok done after $((SECONDS - start)) s" >&2
b -ldflags "$ld" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
echo "build.sh: kubectl done after $((SECONDS - start)) s" >&2
# The real node's kubelet (tests/realnode): same module and version as the control plane.
b -ldflags "$ld" -o "$tmp/kubelet" k8s.io/kubernetes/cmd/kubelet
echo "build.sh: kubelet done after $((SECONDS - start)) s" >&2
# ... and its kube-proxy (Services for the pods there).
b -ldflags "$ld" -o "$tmp/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy
echo "build.sh: kube-proxy done after $((SECONDS - start)) s" >&2
kwok_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
mkdir -p "$tmp/crds"
cp "$kwok_dir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$tmp/crds/"
chmod -R u+w "$tmp/crds"
for c in kube-apiserver kube-controller-manager kube-scheduler; do ln -s kube "$tmp/$c"; done
echo "$key" > "$tmp/.build-key"
echo "build.sh: all binaries built in $((SECONDS - start)) s" >&2

rm -rf "$bin_dir"
if ! mv -T "$tmp" "$bin_dir" 2>/dev/null; then
  # Another build of the same key finished first: keep its result.
  [[ "$(cat "$bin_dir/.build-key" 2>/dev/null)" == "$key" ]] || { echo "build.sh: cannot install $bin_dir" >&2; exit 1; }
  rm -rf "$tmp"
fi
trap - EXIT
# Prune builds for other hashes that no checkout used for 14 days.
if [[ -z "${CLUSTER_BIN_DIR:-}" ]]; then
  find "$(dirname "$(dirname "$bin_dir")")" -maxdepth 3 -path '*/cluster-*/bin/.build-key' -mtime +14 2>/dev/null |
    while read -r stale; do rm -rf "$(dirname "$(dirname "$stale")")"; done
fi
echo "$bin_dir"
