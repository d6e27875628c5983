#!/usr/bin/env bash
# Runs scripts/bootstrap.sh as a brand-new machine would (issue 22): inside a fresh
# `debootstrap --variant=minbase bookworm` root that has the Swift toolchain (/opt/swift,
# bind-mounted read-only) and a client-only `docker` in /usr/local/bin (this machine's static
# client, copied), but no dockerd and no docker.io. Then checks what the tests need: a
# `dockerd` binary for scripts/services.sh, a working `docker compose version`, and a
# `swift build` of hs-backup (the root reads Swift packages from this machine's mirror,
# /opt/swift-packages, as a new machine here does). Starting dockerd inside the root is not
# part of the check.
#
# The root gets this machine's apt sources and settings, CA certificates and pip settings, as
# a real new machine here has them. The repository's working tree (tracked and untracked,
# not ignored files) is copied in, so an uncommitted change is what is checked.
#
# Usage: scripts/fresh-machine-check.sh [--keep]   (as root; needs debootstrap; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[fresh-machine] %s\n' "$*" >&2; }
keep=false
case "${1:-}" in "") ;; --keep) keep=true ;; *) echo "usage: scripts/fresh-machine-check.sh [--keep]" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { log "run as root (debootstrap, chroot, mount)"; exit 2; }
command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
[ -x /opt/swift/usr/bin/swift ] || { log "no Swift toolchain at /opt/swift to give the root"; exit 1; }
client=$(command -v docker) || { log "no docker client on this machine to copy into the root"; exit 1; }

work=$(mktemp -d /var/tmp/hs-fresh-machine.XXXXXX)
root="$work/root"
cleanup() {
  for m in "$root/opt/swift" "$root/opt/swift-packages" "$root/proc"; do
    if mountpoint -q "$m"; then umount "$m"; fi
  done
  if $keep; then log "kept $root"; else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT

cache=/var/cache/hs-tests/debian-bookworm-minbase.tar   # the same pristine root the tests cache
mkdir -p "$root"
if [ -f "$cache" ]; then
  log "unpacking the pristine minbase root ($cache)"
  tar --numeric-owner -xpf "$cache" -C "$root"
else
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  log "debootstrap --variant=minbase bookworm (${mirror:-http://deb.debian.org/debian})"
  debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log"
fi

log "copying apt sources and settings, CA certificates, pip settings, resolv.conf"
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$root/etc/apt/"; fi
for f in /etc/apt/apt.conf.d/99*; do if [ -f "$f" ]; then cp "$f" "$root/etc/apt/apt.conf.d/"; fi; done
mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/"; fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

log "giving it the Swift toolchain and a client-only docker ($client)"
mkdir -p "$root/opt/swift" "$root/usr/local/bin"
mount --bind /opt/swift "$root/opt/swift"
mount -o remount,bind,ro "$root/opt/swift"
cp "$client" "$root/usr/local/bin/docker"
if [ -d /opt/swift-packages ]; then
  mkdir -p "$root/opt/swift-packages"
  mount --bind /opt/swift-packages "$root/opt/swift-packages"
  mount -o remount,bind,ro "$root/opt/swift-packages"
fi
for f in /etc/gitconfig /etc/gitignore; do if [ -f "$f" ]; then cp "$f" "$root/etc/"; fi; done
mount -t proc proc "$root/proc"

log "copying the working tree into /root/home-server"
mkdir -p "$root/root/home-server"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$root/root/home-server"

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LC_ALL=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/swift/usr/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
    /bin/bash -c "$1"
}
if in_root 'command -v dockerd' >/dev/null; then log "the fresh root already has dockerd: not a brand-new machine"; exit 1; fi
log "the root before: $(in_root 'docker --version') (client only), no dockerd"
log "running scripts/bootstrap.sh --plan, then scripts/bootstrap.sh in the root"
in_root 'cd /root/home-server && scripts/bootstrap.sh --plan'
start=$(date +%s)
in_root 'cd /root/home-server && scripts/bootstrap.sh'
log "bootstrap.sh took $(( $(date +%s) - start )) s"

dockerd=$(in_root 'command -v dockerd') || { log "FAILED: no dockerd in the root after bootstrap.sh"; exit 1; }
compose=$(in_root 'docker compose version') || { log "FAILED: 'docker compose version' does not work in the root"; exit 1; }
log "swift build --product hs-backup in the root"
in_root 'cd /root/home-server && swift build --product hs-backup 2>&1 | sed -E "/^\[[0-9]+\/[0-9]+\] /d" | tail -3'
in_root 'cd /root/home-server && "$(swift build --show-bin-path)/hs-backup" --help' >/dev/null
log "ok: dockerd at $dockerd for scripts/services.sh; $compose; docker on PATH: $(in_root 'command -v docker')"
