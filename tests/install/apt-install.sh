#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install Debian packages with apt-get, through sudo unless root.
# Fails with a clear message when that is impossible (no apt-get, no root and no sudo).
set -euo pipefail
(( $# > 0 )) || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
command -v apt-get >/dev/null || { echo "apt-install.sh: no apt-get here; install $* by hand" >&2; exit 1; }
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "apt-install.sh: need root or passwordless sudo to install $*; install it by hand" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "apt-install.sh: installing $*" >&2
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "$@" >&2; then
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" apt-get install -y --no-install-recommends "$@" >&2
fi
