#!/bin/sh
# Make sure a headless Chromium is available for the report browser test (docs/reports.md).
# Idempotent: does nothing when chromium (or chromium-browser / google-chrome) is on PATH; otherwise
# installs Debian's chromium with apt-get when running as root on a Debian/Ubuntu machine. Never fails
# the build: when it cannot install, it says why and the browser test skips with that reason.
set -u
for exe in chromium chromium-browser google-chrome; do
    if command -v "$exe" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium missing and cannot apt-get install it (needs root + apt-get);" \
        "the report browser test will skip" >&2
    exit 0
fi
echo "ensure_chromium: installing chromium with apt-get (first run only)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
        || echo "ensure_chromium: apt-get install chromium failed; the browser test will skip" >&2
fi
exit 0
