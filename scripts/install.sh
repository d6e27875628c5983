#!/usr/bin/env bash
# Installs the tools on this host from the package, as root:
#   scripts/install.sh                 build the package (scripts/package.sh) and install it
#   scripts/install.sh PATH.deb        install a package built elsewhere (no toolchain needed)
# It runs `apt-get install` of the .deb, which pulls only the runtime libraries the package
# depends on. Building needs a Swift toolchain and the build dependencies (-dev packages,
# installed by `scripts/bootstrap.sh --build-only`). It never installs test dependencies,
# Docker or a Compose plugin, and never stops a service.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install] %s\n' "$*" >&2; }

if [ $# -gt 1 ]; then echo "usage: scripts/install.sh [PATH.deb]" >&2; exit 2; fi
if [ "$(id -u)" -ne 0 ]; then log "run as root (apt-get install)"; exit 2; fi

if [ $# -eq 1 ]; then
  deb=$(readlink -f "$1")
  if [ ! -f "$deb" ] || [ "${deb%.deb}" = "$deb" ]; then
    log "$1 is not a .deb file: give the path of dist/home-server-tools_<version>_amd64.deb"
    exit 2
  fi
else
  scripts/bootstrap.sh --build-only
  built=$(scripts/package.sh)   # prints the .deb path, then the tarball path
  deb=$(head -1 <<< "$built")
  [ -f "$deb" ] || { log "scripts/package.sh did not report a .deb"; exit 1; }
fi

log "apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb"
for t in hs-backup hs-restore hs-linkcheck hs-provision hs-deploy; do
  if [ -e "/usr/local/bin/$t" ]; then
    log "note: /usr/local/bin/$t (an older install) comes first on PATH: remove it to use /usr/bin/$t"
  fi
  "/usr/bin/$t" --help >/dev/null
done
log "installed: $(dpkg-query -W -f='${Package} ${Version}' home-server-tools) (/usr/bin/hs-*)"
