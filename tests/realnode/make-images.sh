#!/usr/bin/env bash
# Build the real-scanner test images offline with umoci, as an OCI image layout:
#
#   OUT_DIR/oci                 OCI layout with the tags app:1, clean:1 and java:1 (one layer
#                               each; `skopeo copy oci:OUT_DIR/oci:app:1 docker://REGISTRY/app:1`)
#   OUT_DIR/java-db             the offline Java DB that names java:1's vendored JAR (javadb/),
#                               for the scan pods' Java DB image and check-scanner.sh
#   OUT_DIR/images.env          APP_DIGEST, CLEAN_DIGEST, JAVA_DIGEST (manifest digests),
#                               GO_STDLIB_VERSION
#   OUT_DIR/expected/*.json     tests/realnode/expected/*.json with @GO_STDLIB_VERSION@ filled
#                               in: the exact `image-scanner-operator report` output expected
#                               for each image and DB (see expected/README.md)
#
# app:1, the "vulnerable app": a Debian-12-looking rootfs (os-release, debian_version, a dpkg
# status with openssl, libssl3, zlib1g, bash), busybox as /bin/busybox with /bin/sh and
# /bin/sleep (the workload runs `sleep infinity`), an npm package in /usr/lib/node_modules,
# the Go binary /usr/local/bin/hello (golang.org/x/text v0.3.7) and a copy at /opt/tools/hello,
# and /home/app (uid 1000,
# mode 0700) holding another npm package: only a reader that bypasses permissions (root
# with CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE) finds it.
# clean:1: busybox, Debian 12 os-release and a dpkg status with just bash.
# java:1: clean:1 plus two JARs from javadb/: /opt/app/log4j-core-2.14.1.jar (named by its
# pom.properties) and /opt/app/lib/vendored.jar (named only by the Java DB's SHA-1 index).
#
# Must run as root: umoci then records the files' real owners and modes in the layers.
# Files get a fixed mtime and the configs a fixed creation time, so a rebuild with the same
# inputs gives the same digests.
#
# Usage: make-images.sh OUT_DIR
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "make-images.sh: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || { echo "usage: make-images.sh OUT_DIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root (the layers must keep uid 1000 and mode 0700 of /home/app)"
for tool in umoci jq; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH"
done

# busybox-static installs /bin/busybox; the image has no libc, so it must be static.
busybox="${BUSYBOX:-/bin/busybox}"
[[ -x "$busybox" ]] || die "$busybox not found (apt-get install busybox-static, or set BUSYBOX)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked; need busybox-static"; fi

mkdir -p "$1"
out="$(cd "$1" && pwd)"
bin_dir="$("$here/build-trivy.sh" hello javadb | tail -n 1)"
hello="$bin_dir/hello"

# The stdlib "version" trivy reports for a Go binary: its Go version, "v"-prefixed, without
# a GOEXPERIMENT suffix (trivy: pkg/dependency/parser/golang/binary).
go_version="$(go version "$hello" | awk '{print $2}')"
go_version="${go_version#go}"
go_version="${go_version%% X:*}"
go_version="${go_version%%-X:*}"
stdlib_version="v$go_version"

readonly epoch=1767225600               # 2026-01-01T00:00:00Z: every file's mtime
readonly created=2026-01-01T00:00:00Z   # the image configs' creation time

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# put FILE MODE: writes stdin to FILE (inside the rootfs being built) with MODE, owned by root.
put() {
  mkdir -p "$(dirname "$1")"
  cat > "$1"
  chmod "$2" "$1"
}

# The parts both images share: busybox and a Debian 12 identity.
base_rootfs() {
  local r="$1"
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/var/lib/dpkg"
  chmod 1777 "$r/tmp"
  install -m 0755 "$busybox" "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  ln -s busybox "$r/bin/sleep"
  put "$r/etc/os-release" 0644 <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
EOF
  # trivy detects Debian by etc/debian_version (with only os-release it silently reports no
  # OS packages at all).
  echo 12.8 | put "$r/etc/debian_version" 0644
}

dpkg_bash() {
  cat <<'EOF'
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7164
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Source: bash (5.2.15-2)
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell

EOF
}

populate_app() {
  local r="$1"
  base_rootfs "$r"
  { dpkg_bash; cat <<'EOF'
Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6029
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit - shared libraries

Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 2308
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit - cryptographic utility

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

EOF
  } | put "$r/var/lib/dpkg/status" 0644
  put "$r/usr/lib/node_modules/lodash/package.json" 0644 <<'EOF'
{
  "name": "lodash",
  "version": "4.17.20",
  "description": "Lodash modular utilities.",
  "license": "MIT",
  "main": "lodash.js"
}
EOF
  install -D -m 0755 "$hello" "$r/usr/local/bin/hello"
  # The same binary again elsewhere: its findings must say which file each is in, not be two
  # identical entries (the scan template locates language findings by their file).
  install -D -m 0755 "$hello" "$r/opt/tools/hello"
  # Readable by its owner only: a scanner running as root WITHOUT capabilities (the scan
  # Job's `drop: [ALL]`) cannot enter it.
  put "$r/home/app/node_modules/minimist/package.json" 0644 <<'EOF'
{
  "name": "minimist",
  "version": "1.2.5",
  "description": "parse argument options",
  "license": "MIT",
  "main": "index.js"
}
EOF
  chown -R 1000:1000 "$r/home/app"
  chmod 0700 "$r/home/app"
}

populate_clean() {
  local r="$1"
  base_rootfs "$r"
  dpkg_bash | put "$r/var/lib/dpkg/status" 0644
}

populate_java() {
  local r="$1"
  populate_clean "$r"
  install -D -m 0644 "$work/javadb/jars/log4j-core-2.14.1.jar" "$r/opt/app/log4j-core-2.14.1.jar"
  install -D -m 0644 "$work/javadb/jars/vendored.jar" "$r/opt/app/lib/vendored.jar"
}

# build_image TAG POPULATE: one image of one layer, from an empty rootfs.
build_image() {
  local tag="$1" populate="$2" bundle
  bundle="$work/bundle-${tag%%:*}"
  umoci new --image "$out/oci:$tag"
  umoci unpack --image "$out/oci:$tag" "$bundle"
  "$populate" "$bundle/rootfs"
  find "$bundle/rootfs" -exec touch -h -d "@$epoch" {} +
  # A history entry with a fixed time: without one, umoci warns that tools get confused.
  umoci repack --image "$out/oci:$tag" --history.created "$created" \
    --history.created_by "tests/realnode/make-images.sh" "$bundle"
  umoci config --no-history --image "$out/oci:$tag" --created "$created" \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.cmd /bin/sleep --config.cmd infinity
}

start=$SECONDS
rm -rf "$out/oci" "$out/expected" "$out/java-db"
"$bin_dir/javadb" "$work/javadb"
cp -R "$work/javadb/java-db" "$out/java-db"
umoci init --layout "$out/oci"
build_image app:1 populate_app
build_image clean:1 populate_clean
build_image java:1 populate_java
# Drop the intermediate manifests and configs of new/repack/config.
umoci gc --layout "$out/oci"

digest_of() { jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$out/oci/index.json"; }
{
  echo "APP_DIGEST=$(digest_of app:1)"
  echo "CLEAN_DIGEST=$(digest_of clean:1)"
  echo "JAVA_DIGEST=$(digest_of java:1)"
  echo "GO_STDLIB_VERSION=$stdlib_version"
} > "$out/images.env"

mkdir -p "$out/expected"
for f in "$here"/expected/*.json; do
  sed "s/@GO_STDLIB_VERSION@/$stdlib_version/g" "$f" > "$out/expected/$(basename "$f")"
done

echo "make-images.sh: app:1, clean:1 and java:1 built in $((SECONDS - start)) s into $out/oci" >&2
cat "$out/images.env" >&2
