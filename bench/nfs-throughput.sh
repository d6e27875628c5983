#!/usr/bin/env bash
# NFS write/read throughput: the NFS module (NFSDestination / NFSFile) against nfs-cp
# (libnfs-utils) and a local write+fsync, same data, same run, against a fresh nfs-ganesha.
# Usage: bench/nfs-throughput.sh [MiB]   (default 100; CONFIG=release for an optimised build)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/services.sh >/dev/null 2>&1 || true
CONFIG="${CONFIG:-debug}"
swift build -c "$CONFIG" --product nfs-bench 2>&1 | grep -E 'error|warning: unre' || true
HS_BENCH_MIB="${1:-100}" "$(swift build -c "$CONFIG" --show-bin-path)/nfs-bench"
