#!/usr/bin/env bash
# Build the real node's containerd v2, its runc shim and ctr from the Go module in ./containerd
# into a cached folder, printed as the last line
# (${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/containerd-<hash>, the hash covering the module,
# this script and the Go version). Debian's runc runs the containers.
#
# Tags as containerd's own release builds for a machine without btrfs headers: no cgo, and the
# snapshotters that need it (or a kernel module this node does not use) left out.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/containerd"
export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
key="$( { go version; cat go.mod go.sum tools.go "$here/build-containerd.sh"; } | sha256sum | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/containerd-$key"
if [[ ! -x "$dir/containerd" || ! -x "$dir/containerd-shim-runc-v2" || ! -x "$dir/ctr" ]]; then
  mkdir -p "$dir"
  exec {lock_fd}> "$dir.lock"
  flock "$lock_fd"
  version="$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
  start=$SECONDS
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    [[ -x "$dir/$cmd" ]] && continue
    tags="urfave_cli_no_docs no_btrfs no_devmapper no_zfs no_aufs"
    # The shim speaks ttrpc only (containerd's Makefile: SHIM_GO_BUILDTAGS).
    [[ "$cmd" == containerd-shim-runc-v2 ]] && tags+=" no_grpc"
    # A private name, then a rename: a concurrent build never sees or leaves half a binary.
    tmp="$(mktemp "$dir/.$cmd.XXXXXX")"
    nice -n 10 go build -trimpath -tags "$tags" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$version" \
      -o "$tmp" "github.com/containerd/containerd/v2/cmd/$cmd"
    mv -f "$tmp" "$dir/$cmd"
  done
  echo "build-containerd.sh: containerd $version built in $((SECONDS - start)) s" >&2
fi
echo "$dir"
