#!/usr/bin/env bash
# The test command (a test machine or CI, as root): installs the build and test dependencies
# that are missing (scripts/bootstrap.sh), starts rpcbind and dockerd (scripts/services.sh),
# builds, and runs every test against the real components (nfs-ganesha, dockerd, GNU tar,
# bsdtar, debootstrap chroots, ...). PackageTests builds the release package once per run
# (scripts/package.sh, a few minutes) unless HS_PACKAGE_DEB names one already built.
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter Gzip]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/bootstrap.sh
scripts/services.sh
# Progress lines ("[12/80] Compiling ...") are dropped; pipefail keeps a failed build fatal.
swift build --build-tests 2>&1 | sed -E '/^\[[0-9]+\/[0-9]+\] /d'
swift test --skip-build "$@"
