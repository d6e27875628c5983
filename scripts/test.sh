#!/usr/bin/env bash
# The test command: installs what is missing, starts the services the tests use, builds, and
# runs every test against the real components (nfs-ganesha, dockerd, GNU tar, bsdtar, ...).
# Usage: sudo scripts/test.sh [extra `swift test` arguments, e.g. --filter Gzip]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/bootstrap.sh
scripts/services.sh
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] ' || true
swift test --skip-build "$@"
