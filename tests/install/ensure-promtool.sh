#!/usr/bin/env bash
# Prints the path of promtool, installing Debian's `prometheus` package (which ships it) with
# apt-get when it is missing. Exit 1 with a clear message when that is impossible.
set -euo pipefail
if ! command -v promtool >/dev/null; then
  "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" prometheus || {
    echo "ensure-promtool.sh: promtool is missing and could not be installed" >&2
    exit 1
  }
  # The package's service must not keep running on a CI machine; we only want the tool.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus 2>/dev/null || sudo -n systemctl stop prometheus 2>/dev/null || true
  fi
  command -v promtool >/dev/null || { echo "ensure-promtool.sh: prometheus installed but no promtool on PATH" >&2; exit 1; }
fi
command -v promtool
