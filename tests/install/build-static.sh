#!/usr/bin/env bash
# Build the operator as one statically linked binary: exactly what the container image ships.
# The Dockerfile's build stage runs this script too, so `make image-binary` on a host and
# `docker build` produce the same binary from the same commands.
#
# Target (for the machine's architecture, `uname -m`, e.g. x86_64): <arch>-unknown-linux-musl when
# its standard library is installed (rustup target add <arch>-unknown-linux-musl) and a musl C
# compiler exists (musl-gcc from Debian's musl-tools; ring compiles C), else
# <arch>-unknown-linux-gnu with a statically linked glibc. musl is preferred: a static glibc
# still wants shared NSS modules for host-name lookups. BUILD_STATIC_TARGET overrides the choice.
#
# Output: $OUT_DIR/image-scanner-operator (default target/image/ in the repository).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out_dir="${OUT_DIR:-$repo/target/image}"
cargo="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

installed_targets="$(rustup target list --installed 2>/dev/null || true)"
target="${BUILD_STATIC_TARGET:-}"
if [[ -z "$target" ]]; then
  arch="$(uname -m)"
  if grep -qx "$arch-unknown-linux-musl" <<<"$installed_targets" \
     && { command -v musl-gcc || command -v "$arch-linux-musl-gcc"; } >/dev/null; then
    target="$arch-unknown-linux-musl"
  else
    target="$arch-unknown-linux-gnu"
  fi
fi

# crt-static is musl's default; for gnu it links glibc statically.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
echo "build-static.sh: building image-scanner-operator for $target (static) into $out_dir" >&2
cd "$repo"
nice -n 10 "$cargo" build --release --locked --bin image-scanner-operator --target "$target"

mkdir -p "$out_dir"
install -m 0755 "$target_dir/$target/release/image-scanner-operator" "$out_dir/image-scanner-operator"
# Symbols only make the image larger (panics still print locations).
if command -v strip >/dev/null; then strip "$out_dir/image-scanner-operator"; fi
echo "$out_dir/image-scanner-operator"
