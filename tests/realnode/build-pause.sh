#!/usr/bin/env bash
# Build the real node's pause (sandbox) binary from ./pause into a cached folder, printed as the
# last line (${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/pause-<hash>, the hash covering the
# sources and the Go version).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/pause"
key="$( { go version; cat go.mod main.go "$here/build-pause.sh"; } | sha256sum | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/image-scanner/pause-$key"
if [[ ! -x "$dir/pause" ]]; then
  mkdir -p "$dir"
  GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$dir/pause.tmp" .
  mv "$dir/pause.tmp" "$dir/pause"
fi
echo "$dir"
