#!/usr/bin/env bash
# Push a copy of a test image that no pod has pulled yet, for tests of the kubelet's pull
# credential checks (KEP-2535), and print its reference and manifest digest:
#
#   fresh-image.sh NAME    NAME: app, clean or java (realnode.env's <NAME>_IMAGE)
#   → "<registry>/test/<name>:fresh-<nonce> sha256:<manifest digest>" on stdout
#
# Why: the kubelet's pull records (<root-dir>/image_manager) are per image ID, the image's
# config digest, and survive restarts; an image once pulled anonymously, with node
# credentials or while the gate was off is usable by every pod on the node for good. A test
# that needs the check must use an image ID nothing has touched, in every run on the same
# cluster too. The copy has the same layers (same files, same scan result) and a config with
# one more label, `image-scanner.test/nonce`, so a new config digest and a new manifest
# digest. Plain registry API calls (distribution v2): upload the config blob, put the
# manifest under a new tag of the same repository (its layers are there already).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "$here/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: fresh-image.sh NAME" >&2; exit 2; }
[[ -f "$RN_ENV" ]] || die "no real node settings in $RN_ENV (make cluster-up)"
# shellcheck source=/dev/null
source "$RN_ENV"
image_var="${1^^}_IMAGE"
base="${!image_var:-}"
[[ -n "$base" ]] || die "no $image_var in $RN_ENV"
# <registry>/<repository>:<tag>
repo_tag="${base#"$REGISTRY"/}"
repo="${repo_tag%:*}"
tag="${repo_tag##*:}"
api="https://$REGISTRY/v2/$repo"
manifest_type=application/vnd.oci.image.manifest.v1+json

reg() { curl -sfS --max-time 30 --cacert "$REGISTRY_CA" -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "$@"; }
sha256() { sha256sum "$1" | awk '{print "sha256:" $1}'; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
reg -H "Accept: $manifest_type" "$api/manifests/$tag" > "$work/manifest.json" ||
  die "cannot read the manifest of $base"
# (mediaType is optional in the manifest itself; the config's tells an image manifest)
[[ "$(jq -r '.schemaVersion, .config.mediaType' "$work/manifest.json" | paste -sd ' ')" == \
  "2 application/vnd.oci.image.config.v1+json" ]] || die "$base is not an OCI image manifest"
reg "$api/blobs/$(jq -r .config.digest "$work/manifest.json")" > "$work/base-config.json" ||
  die "cannot read the config of $base"

nonce="$(date -u +%s%N)-$$"
jq -c --arg nonce "$nonce" '.config.Labels["image-scanner.test/nonce"] = $nonce' \
  "$work/base-config.json" > "$work/config.json"
config_digest="$(sha256 "$work/config.json")"
config_size="$(stat -c %s "$work/config.json")"

# Monolithic upload: POST opens the session, PUT with the digest closes it with the content.
location="$(reg -X POST -D - -o /dev/null "$api/blobs/uploads/" |
  awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')"
[[ -n "$location" ]] || die "the registry opened no upload session for $repo"
[[ "$location" == http* ]] || location="https://$REGISTRY$location"
sep='?'; [[ "$location" == *'?'* ]] && sep='&'
reg -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$work/config.json" \
  "$location${sep}digest=$config_digest" -o /dev/null || die "config upload to $repo failed"

jq -c --arg d "$config_digest" --argjson s "$config_size" '.config.digest = $d | .config.size = $s' \
  "$work/manifest.json" > "$work/fresh-manifest.json"
fresh_tag="fresh-$nonce"
reg -X PUT -H "Content-Type: $manifest_type" --data-binary "@$work/fresh-manifest.json" \
  "$api/manifests/$fresh_tag" -o /dev/null || die "manifest upload to $repo:$fresh_tag failed"
digest="$(sha256 "$work/fresh-manifest.json")"
# What the registry serves under the new tag must be exactly these bytes.
served="$(reg -I -H "Accept: $manifest_type" "$api/manifests/$fresh_tag" |
  awk 'tolower($1) == "docker-content-digest:" {print $2}' | tr -d '\r')"
[[ "$served" == "$digest" ]] || die "the registry serves $repo:$fresh_tag as '$served', not $digest"
echo "$REGISTRY/$repo:$fresh_tag $digest"
