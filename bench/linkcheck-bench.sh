#!/usr/bin/env bash
# Benchmark: `hs-linkcheck --audit` on a 100k-file library vs `find -links 1` (the stat-speed
# reference), measured in the same run. Release build; warm page cache; median of RUNS runs.
# Usage: bench/linkcheck-bench.sh [FILES (default 100000)] [RUNS (default 5)]
# Env: BENCH_DIR (where the tree is generated, default /var/tmp), KEEP=1 keeps the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
FILES=${1:-100000}
RUNS=${2:-5}
log() { printf '[bench] %s\n' "$*" >&2; }

log "release build of hs-linkcheck (bench/build.sh)"
. bench/build.sh
bench_build hs-linkcheck
BIN="$BIN/hs-linkcheck"

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/hs-linkcheck-bench.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/storage"

log "generating $FILES library files under $ROOT"
python3 - "$ROOT" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
lib, dl = os.path.join(root, "library"), os.path.join(root, "downloads")
folders = ["movies", "tv", "music", "xxx", "comics", "books"]
made = set()
def mk(d):
    if d not in made:
        os.makedirs(d, exist_ok=True); made.add(d)
# Library: small files, sizes 1..1023 (never 5000+: those are the planted collisions).
for i in range(n):
    d = os.path.join(lib, folders[i % 6], "show%04d" % (i // 60))
    mk(d)
    with open(os.path.join(d, "ep%06d.mkv" % i), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1, 1023)))
# Downloads: n/5 files with sizes 2000..4999 (no collision with the library) ...
for i in range(n // 5):
    d = os.path.join(dl, "torrents/complete", folders[i % 4], "rel%04d" % (i // 50))
    mk(d)
    with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(2000, 4999)))
# ... plus a few size collisions: 50 true copies, 50 same size but different content,
# 50 existing hardlinks.
os.makedirs(os.path.join(dl, "usenet/complete/movies"), exist_ok=True)
os.makedirs(os.path.join(lib, "movies/collisions"), exist_ok=True)
for k in range(50):
    b = rnd.randbytes(5000 + k)
    open(os.path.join(dl, "usenet/complete/movies/copy%02d.mkv" % k), "wb").write(b)
    open(os.path.join(lib, "movies/collisions/copy%02d.mkv" % k), "wb").write(b)
    c = rnd.randbytes(6000 + k)
    open(os.path.join(dl, "usenet/complete/movies/diff%02d.mkv" % k), "wb").write(c)
    open(os.path.join(lib, "movies/collisions/diff%02d.mkv" % k), "wb").write(bytes([c[0] ^ 1]) + c[1:])
    h = os.path.join(dl, "usenet/complete/movies/link%02d.mkv" % k)
    open(h, "wb").write(rnd.randbytes(7000 + k))
    os.link(h, os.path.join(lib, "movies/collisions/link%02d.mkv" % k))
PY
LIBN=$(find "$ROOT/library" -type f | wc -l); DLN=$(find "$ROOT/downloads" -type f | wc -l)
log "tree: $LIBN library files, $DLN downloads files, $(du -sh "$ROOT" | cut -f1)"

# expect STATUS CMD...: runs CMD; a status other than STATUS, or a signal, stops the bench.
# The audit exits 1 by design when it finds copies (the tree has 50 planted ones).
expect() {
  local want=$1 rc=0; shift
  "$@" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    log "$* exited $rc (expected $want)$([ "$rc" -gt 128 ] && echo ": killed by signal $((rc - 128))")"; exit 1
  fi
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
measure() {  # status command...: sets MW and MC to the median wall and cpu of RUNS runs (after one warm-up)
  local want=$1; shift
  expect "$want" "$@" >/dev/null 2>&1
  local tf walls=() cpus=()
  tf=$(mktemp)
  for _ in $(seq "$RUNS"); do
    expect "$want" /usr/bin/time -f '%e %U %S' -o "$tf" "$@" >/dev/null 2>/dev/null
    read -r e u s < <(tail -1 "$tf")
    walls+=("$e"); cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN{print u+s}')")
  done
  rm -f "$tf"
  MW=$(printf '%s\n' "${walls[@]}" | median); MC=$(printf '%s\n' "${cpus[@]}" | median)
}
ratio() { awk -v x="$1" -v y="$2" 'BEGIN{printf "%.2f", x/y}'; }

# Correctness check of the run being timed.
OUT=$(expect 1 "$BIN" "$ROOT" --audit --json 2>/dev/null)
COPIES=$(printf '%s' "$OUT" | python3 -c 'import json,sys; a=json.load(sys.stdin)["audit"]; print(a["copies"], a["files_hashed"], a["single_link_files"])')
read -r NCOPIES NHASHED NSINGLE <<<"$COPIES"
[ "$NCOPIES" = 50 ] || { log "expected 50 copies, audit found $NCOPIES"; exit 1; }

# (measure runs in this shell, not in a subshell, so a failed run stops the bench)
measure 0 bash -c "set -o pipefail; find '$ROOT/library' -type f -links 1 | wc -l"; W_FIND=$MW; C_FIND=$MC
measure 0 bash -c "set -o pipefail; find '$ROOT/library' '$ROOT/downloads' -type f -links 1 -printf '%s\n' | wc -l"; W_FIND2=$MW; C_FIND2=$MC
measure 1 "$BIN" "$ROOT" --audit --json; W_LC=$MW; C_LC=$MC

printf '\n%-54s %8s %6s %8s %6s\n' "command ($LIBN library + $DLN downloads files)" "wall s" "ratio" "cpu s" "ratio"
row() { printf '%-54s %8.2f %6s %8.2f %6s\n' "$1" "$2" "$(ratio "$2" "$W_FIND")" "$3" "$(ratio "$3" "$C_FIND")"; }
row "find library -type f -links 1 | wc -l" "$W_FIND" "$C_FIND"
row "find library downloads -type f -links 1 -printf '%s'" "$W_FIND2" "$C_FIND2"
row "hs-linkcheck --audit (both trees, probe, hashing)" "$W_LC" "$C_LC"
printf '\naudit: %s single-link library files, %s files hashed (size collisions only), %s copies found\n' "$NSINGLE" "$NHASHED" "$NCOPIES"
printf 'median of %s runs after a warm-up (warm page cache); cpu = user+sys; %s cores, shared with other builds (load %s)\n' \
  "$RUNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
