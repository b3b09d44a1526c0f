#!/usr/bin/env bash
# Choose what `kubectl logs` (pods/log) returns for every container whose image
# has a given digest.
#
#   serve-log.sh <digest-or-image> <file|->
#
# <digest-or-image>: sha256:<hex>, a bare <hex>, an image reference with a digest
#   (repo@sha256:<hex>), or any other image string (then the key is the sha256 of
#   that exact string, the same rule the kwok stages use for imageID).
# <file>: any bytes (JSON of several MB, text with ANSI codes, ...); "-" = stdin.
#
# Writes target/cluster/logs/<hex>.log in CRI log format ("<RFC3339Nano> stdout F
# <line>"), splitting lines longer than CRI_MAX_LINE bytes (default 16384, like
# containerd) into "P" partial records. A file that does not end in a newline gets
# its last record tagged "P", so the API returns the file byte for byte.
# Every pod created by the cluster's kwok maps each container to
# target/cluster/logs/<hex of its image>.log, read at request time: the file may
# be written before or after the pod exists.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 ]] || { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
key="$1" src="$2"
max="${CRI_MAX_LINE:-16384}"

if [[ "$key" =~ sha256:([0-9a-f]{64})$ ]]; then
  hex="${BASH_REMATCH[1]}"
elif [[ "$key" =~ ^[0-9a-f]{64}$ ]]; then
  hex="$key"
else
  hex="$(printf '%s' "$key" | sha256sum | cut -c1-64)"
fi

mkdir -p "$LOGS_DIR"
tmp="$(mktemp "$LOGS_DIR/.tmp.XXXXXX")"
trap 'rm -f "$tmp" "$tmp.in"' EXIT
if [[ "$src" == "-" ]]; then
  cat > "$tmp.in"
else
  [[ -f "$src" ]] || die "no such file: $src"
  cp "$src" "$tmp.in"
fi

nonl=0
if [[ -s "$tmp.in" && "$(tail -c1 "$tmp.in" | od -An -tx1 | tr -d ' \n')" != "0a" ]]; then nonl=1; fi
ts="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"

LC_ALL=C awk -v ts="$ts" -v max="$max" -v nonl="$nonl" '
  function emit(line, last,    n) {
    while (length(line) > max) {
      printf "%s stdout P %s\n", ts, substr(line, 1, max)
      line = substr(line, max + 1)
    }
    printf "%s stdout %s %s\n", ts, (last && nonl ? "P" : "F"), line
  }
  NR > 1 { emit(prev, 0) }
  { prev = $0 }
  END { if (NR > 0) emit(prev, 1) }
' "$tmp.in" > "$tmp"
mv -f "$tmp" "$LOGS_DIR/$hex.log"
echo "$LOGS_DIR/$hex.log"
