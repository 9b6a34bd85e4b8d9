#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet, with
# apt-get (through sudo when not root). Does nothing when all are there.
# Usage: ci/install-packages.sh PACKAGE... (called by ci/test.sh, ci/sanitize.sh, ci/bench.sh)
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "ci/install-packages.sh: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
