#!/usr/bin/env bash
# NFS write/read throughput: the NFS module (NFSDestination / NFSFile) against nfs-cp
# (libnfs-utils) and a local write+fsync, same data, same run, against a fresh nfs-ganesha.
# Usage: bench/nfs-throughput.sh [MiB]   (default 100; CONFIG=release for an optimised build)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/services.sh
CONFIG="${CONFIG:-debug}"
# pipefail: a failed build stops the bench; sed only drops the progress lines.
swift build -c "$CONFIG" --product nfs-bench 2>&1 | sed -E '/^\[[0-9]+\/[0-9]+\] /d'
HS_BENCH_MIB="${1:-100}" "$(swift build -c "$CONFIG" --show-bin-path)/nfs-bench"
