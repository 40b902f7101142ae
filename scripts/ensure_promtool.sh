#!/bin/sh
# Make sure `promtool` is available for the Prometheus export tests (docs/prometheus.md).
# Idempotent: does nothing when promtool is on PATH; otherwise installs Debian's `prometheus` package
# (which ships promtool; bookworm: Prometheus 2.42) with apt-get when running as root on a
# Debian/Ubuntu machine. Never fails the build: when it cannot install, it says why and the promtool
# tests skip with that reason.
set -u
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_promtool: promtool missing and cannot apt-get install it (needs root + apt-get);" \
        "the Prometheus export tests will skip" >&2
    exit 0
fi
echo "ensure_promtool: installing prometheus (for promtool) with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
        || echo "ensure_promtool: apt-get install prometheus failed; the promtool tests will skip" >&2
fi
# Debian's package may start a Prometheus service on port 9090; the tests only run promtool.
exit 0
