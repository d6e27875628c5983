#!/usr/bin/env bash
# Starts the long-running services the tests talk to: rpcbind (for nfs-ganesha, which each
# test run starts itself on free ports) and a local dockerd. Idempotent; fails loudly, saying
# what to do, if one cannot start. The tests need a LOCAL daemon (they bind-mount local
# directories into containers), so DOCKER_HOST and DOCKER_CONTEXT are ignored here.
set -euo pipefail
log() { printf '[services] %s\n' "$*" >&2; }

if ! pgrep -x rpcbind >/dev/null; then
  command -v rpcbind >/dev/null 2>&1 || { log "no rpcbind: run scripts/bootstrap.sh (it installs rpcbind)"; exit 1; }
  log "starting rpcbind"
  mkdir -p /run/rpcbind
  # -w (warm start) needs its state file from an earlier run; a first start goes without it.
  if ! rpcbind -w; then log "rpcbind -w failed (no warm-start state): starting it cold"; rpcbind; fi
fi
pgrep -x rpcbind >/dev/null || { log "rpcbind did not start"; exit 1; }

local_docker() { env -u DOCKER_HOST -u DOCKER_CONTEXT timeout 10 docker -H unix:///var/run/docker.sock "$@"; }

command -v docker >/dev/null 2>&1 || { log "no docker client on PATH: run scripts/bootstrap.sh (it installs docker.io)"; exit 1; }
if ! local_docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    log "no local Docker daemon and no dockerd on PATH ($(command -v docker) is only a client): run scripts/bootstrap.sh: it installs docker.io"
    exit 1
  fi
  log "starting dockerd ($(command -v dockerd))"
  mkdir -p /var/log
  (dockerd >/var/log/hs-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do
    if local_docker info >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
fi
if ! local_docker info >/dev/null 2>&1; then
  log "dockerd did not start; see /var/log/hs-dockerd.log"
  if [ -f /var/log/hs-dockerd.log ]; then tail -20 /var/log/hs-dockerd.log >&2; fi
  exit 1
fi
log "rpcbind and dockerd are running; docker client $(local_docker version --format '{{.Client.Version}} (API {{.Client.APIVersion}}), server {{.Server.Version}} (API {{.Server.APIVersion}})')"
