#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus and promtool) into Leitstand's cache,
# without installing or starting its service. Used by `make test` for the observability
# tests; idempotent: does nothing when the binaries are already there.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/leitstand/debian/prometheus"
if [[ -x "$cache/usr/bin/prometheus" && -x "$cache/usr/bin/promtool" ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "error: apt-get and dpkg are needed to fetch Debian's prometheus package" >&2
    exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get download prometheus >/dev/null
fi
rm -rf "$cache"
mkdir -p "$cache"
dpkg -x prometheus_*.deb "$cache"
"$cache/usr/bin/prometheus" --version | head -1
