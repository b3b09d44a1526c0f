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
  # A private name, then a rename: a concurrent build never sees or leaves half a binary.
  tmp="$(mktemp "$dir/.pause.XXXXXX")"
  GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$tmp" .
  mv -f "$tmp" "$dir/pause"
fi
echo "$dir"
