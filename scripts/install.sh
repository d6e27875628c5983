#!/usr/bin/env bash
# Builds the five tools in release mode and installs them into PREFIX/bin (default
# /usr/local/bin), where crontab.example and hs-provision expect them. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
PREFIX=${PREFIX:-/usr/local}
if [ "$(id -u)" -eq 0 ]; then scripts/bootstrap.sh; fi
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] ' || true
bin=$(swift build -c release --show-bin-path)
install -d "$PREFIX/bin"
for t in hs-backup hs-restore hs-linkcheck hs-provision hs-deploy; do
  install -m 0755 "$bin/$t" "$PREFIX/bin/$t"
  echo "installed $PREFIX/bin/$t"
done
