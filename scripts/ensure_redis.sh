#!/bin/sh
# Make sure `redis-server` is available for the Redis Streams tests and benchmark (docs/scale-out.md).
# Idempotent: does nothing when redis-server is on PATH; otherwise installs Debian's redis-server with
# apt-get when running as root on a Debian/Ubuntu machine. Never fails the build: when it cannot
# install, it says why and the Redis tests skip with that reason.
set -u
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_redis: redis-server missing and cannot apt-get install it (needs root + apt-get);" \
        "the Redis Streams tests will skip" >&2
    exit 0
fi
echo "ensure_redis: installing redis-server with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
        || echo "ensure_redis: apt-get install redis-server failed; the Redis tests will skip" >&2
fi
# Debian's package may start a system service on port 6379; the tests start their own servers.
exit 0
