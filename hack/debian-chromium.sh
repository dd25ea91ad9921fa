#!/usr/bin/env bash
# Installs Debian's chromium for the headless browser test of the cluster map (/ui).
# Idempotent: does nothing when /usr/bin/chromium is there. Needs root (as on CI).
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "error: chromium is missing; install Debian's chromium package (as root: apt-get install chromium)" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
chromium --version
