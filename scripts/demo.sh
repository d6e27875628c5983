#!/usr/bin/env bash
# The main job on a local directory: installs what is missing, builds the toolkit (release),
# then shows each tool's help. (The backup issue extends this into a backup + restore demo.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/bootstrap.sh
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] ' || true
bin=$(swift build -c release --show-bin-path)
for t in hs-backup hs-restore hs-linkcheck hs-provision hs-deploy; do
  echo "== $t --help"; "$bin/$t" --help; echo
done
