#!/usr/bin/env bash
# Starts the long-running services the tests talk to: rpcbind (for nfs-ganesha, which each
# test run starts itself on free ports) and dockerd. Idempotent; fails loudly if one cannot start.
set -euo pipefail
log() { printf '[services] %s\n' "$*" >&2; }

if ! pgrep -x rpcbind >/dev/null; then
  log "starting rpcbind"
  mkdir -p /run/rpcbind
  rpcbind -w || rpcbind
fi
pgrep -x rpcbind >/dev/null || { log "rpcbind did not start"; exit 1; }

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  (dockerd >/var/log/hs-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! docker info >/dev/null 2>&1; then
  log "dockerd did not start; see /var/log/hs-dockerd.log"
  if [ -f /var/log/hs-dockerd.log ]; then tail -20 /var/log/hs-dockerd.log >&2; fi
  exit 1
fi
log "rpcbind and dockerd are running"
