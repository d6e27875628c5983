#!/usr/bin/env bash
# Browse benchmark: hs-backup find and mount against restic, on a Plex-like set of 30 backups.
#
#   find across all 30 backups      vs  restic find (same 30 snapshots)      target <= 0.5x
#   find peak RSS                                                            target <= 128 MiB
#   fresh mount, page cache dropped: first `ls` of a backup's root           target <= 1 s
#                                    then `cat` of one small file            target <= 0.1 s
#   1 GiB file through the mount (fresh mount, cache dropped)
#                                   vs  hs-backup dump of it (cache dropped) target >= 0.8x throughput
#   hs-backup dump of that file     vs  GNU tar -xzOf of its archive (cache dropped; the reference)
#
# The sets and the restic repository are built once and kept (BENCH_DIR, default
# /var/tmp/hs-browse-bench): a Plex-like tree (bench/mkplex.py, --files N) backed up 30 times by
# hs-backup and restic in lockstep, with a change between backups (Preferences.xml rewritten,
# 200 files rewritten, a bundle added, one removed), and a set holding one 1 GiB file.
# Measurements run interleaved (ours, reference, ...), --rounds times, medians. Run it under the
# bench lock: flock /work/bench.lock bench/browse-bench.sh [--write BENCHMARKS.md]
#
# Usage: bench/browse-bench.sh [--files N] [--rounds N] [--write FILE] [--sets-only] [--lock FILE]
#   --lock FILE  take FILE (flock) for the timed rounds only, after the untimed set-up
#                (e.g. --lock /work/bench.lock instead of running the whole script under flock).
#   --sets-only  build the release binary and the sets (untimed, slow at 1,000,000 files), then stop:
#                run it without the bench lock, then the timed part under the lock.
# Needs: root (drops the page cache), a release build (made here, or HS_BIN=path), python3, restic, fuse3.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
FILES=1000000; ROUNDS=3; WRITE=""; BACKUPS=30; SETS_ONLY=0; LOCK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --write) WRITE=$2; shift 2 ;;
    --sets-only) SETS_ONLY=1; shift ;;
    --lock) LOCK=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root: the page cache is dropped between measurements" >&2; exit 2; }
command -v restic >/dev/null || { echo "restic missing: run scripts/bootstrap.sh" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "fuse3 missing: run scripts/bootstrap.sh" >&2; exit 1; }

if [ -n "${HS_BIN:-}" ]; then
  HS=$HS_BIN   # a release hs-backup built elsewhere (e.g. to build the sets while the sources change)
else
  . bench/build.sh
  bench_build hs-backup
  HS="$BIN/hs-backup"
fi
W=${BENCH_DIR:-/var/tmp/hs-browse-bench}
TREE="$W/plex-$FILES"; DEST="$W/dest-$FILES"; REPO="$W/restic-$FILES"; BIG="$W/big"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$REPO" RESTIC_CACHE_DIR="$W/restic-cache"
mkdir -p "$W"

# --- the sets (built once, by a copy of the binary: a rebuild meanwhile does not change the writer) ---
SETHS="$W/hs-backup.sets"
if [ ! -f "$DEST.done" ] || [ ! -f "$DEST.big.done" ]; then cp "$HS" "$SETHS"; fi
if [ ! -f "$DEST.done" ]; then
  echo "building $BACKUPS backups of a $FILES-file Plex-like tree (hs-backup and restic, once)" >&2
  # an interrupted build leaves a tree changed by some rounds: start again from a fresh one
  rm -rf "$DEST" "$REPO" "$TREE" "$DEST.big.done"
  python3 bench/mkplex.py "$FILES" "$TREE" >&2
  restic init -q
  for i in $(seq 1 "$BACKUPS"); do
    if [ "$i" -gt 1 ]; then
      python3 - "$TREE" "$i" <<'EOF'
import os, random, sys
root, r = sys.argv[1], int(sys.argv[2])
rnd = random.Random(r)
base = os.path.join(root, "Library", "Application Support", "Plex Media Server")
with open(os.path.join(base, "Preferences.xml"), "w") as f: f.write('<Preferences round="%d"/>\n' % r)
meta = os.path.join(base, "Metadata", "Movies")
tops = sorted(os.listdir(meta))
def files_under(d):
    for dp, _, fs in os.walk(d):
        for f in fs: yield os.path.join(dp, f)
# 200 files rewritten, in a few bundles.
done = 0
while done < 200:
    t = os.path.join(meta, rnd.choice(tops)); bs = sorted(os.listdir(t))
    if not bs: continue
    for p in list(files_under(os.path.join(t, rnd.choice(bs))))[:50]:
        with open(p, "ab") as f: f.write(b"<!-- round %d -->" % r)
        done += 1
# a bundle added, one removed
nb = os.path.join(meta, tops[r % len(tops)], "%040x.bundle" % rnd.getrandbits(160), "Contents", "_combined")
os.makedirs(nb)
for k in range(100):
    with open(os.path.join(nb, "Info%03d.xml" % k), "w") as f: f.write("<MediaContainer round=\"%d\" n=\"%d\"/>\n" % (r, k))
t = os.path.join(meta, tops[(r * 7) % len(tops)]); bs = sorted(os.listdir(t))
if bs:
    import shutil; shutil.rmtree(os.path.join(t, bs[0]))
EOF
    fi
    "$SETHS" run -q --source "$TREE" --to "$DEST" --name plex
    restic backup -q "$TREE" >/dev/null
    echo "backup $i/$BACKUPS done at $(date +%H:%M:%S)" >&2
    sleep 1
  done
  touch "$DEST.done"
fi
if [ ! -f "$BIG.done" ]; then
  echo "making one 1 GiB random file (once)" >&2
  rm -rf "$BIG"; mkdir -p "$BIG/src"
  head -c $((1 << 30)) /dev/urandom > "$BIG/src/big.bin"
  touch "$BIG.done"
fi
if [ ! -f "$DEST.big.done" ]; then
  echo "backing up the 1 GiB file as set big in $DEST (once)" >&2
  "$SETHS" run -q --source "$BIG/src" --to "$DEST" --name big
  touch "$DEST.big.done"
fi
if [ "$SETS_ONLY" = 1 ]; then echo "sets ready in $W" >&2; exit 0; fi
IDS=$("$HS" list --to "$DEST" --name plex --json | python3 -c 'import json,sys; print(" ".join(b["id"] for b in json.load(sys.stdin)["backups"]))')
NBACKUPS=$(wc -w <<< "$IDS")
LATEST=${IDS##* }
BIGID=$("$HS" list --to "$DEST" --name big --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["id"])')
BIGARCHIVE="$DEST/big/$BIGID.tar.gz"
BIGMEMBER=$(tar -tzf "$BIGARCHIVE" | grep 'big\.bin$')
SMALL=$("$HS" ls --to "$DEST" --name plex -R --json "Library/Application Support/Plex Media Server/Metadata/TV Shows" \
  | python3 -c 'import json,sys; e=[x for x in json.load(sys.stdin)["entries"] if x["type"]=="file" and x["size"]<2000]; print(e[len(e)//2]["path"])')

now() { date +%s.%N; }
declare -A T
record() { T[$1]="${T[$1]:-} $2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
m() { echo "${T[$1]:-}" | median; }
dropcache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
rsstime() { # name rss-name cmd...: wall time and peak RSS (KiB)
  local name=$1 rname=$2; shift 2
  local a b; a=$(now)
  /usr/bin/time -f %M -o "$W/rss" "$@" >"$W/last.out" 2>"$W/last.err" || { echo "FAILED: $name: $*" >&2; cat "$W/last.err" >&2; exit 1; }
  b=$(now); record "$name" "$(awk "BEGIN{print $b - $a}")"; record "$rname" "$(tail -1 "$W/rss")"
}
timeit() { # name cmd...
  local name=$1; shift
  local a b; a=$(now); "$@" >/dev/null 2>"$W/last.err" || { echo "FAILED: $name: $*" >&2; cat "$W/last.err" >&2; exit 1; }
  b=$(now); record "$name" "$(awk "BEGIN{print $b - $a}")"
}
MP="$W/mnt"; mkdir -p "$MP"
MOUNTPID=""
mountit() {
  "$HS" mount --to "$DEST" "$MP" 2>"$W/mount.log" & MOUNTPID=$!
  for _ in $(seq 1 600); do mountpoint -q "$MP" && return 0; sleep 0.05; done
  echo "the mount did not come up: $(cat "$W/mount.log")" >&2; exit 1
}
unmountit() {
  record mount_rss "$(awk '/VmHWM/ {print $2}' "/proc/$MOUNTPID/status")"
  kill -TERM "$MOUNTPID"; wait "$MOUNTPID"
  if mountpoint -q "$MP"; then echo "still mounted after SIGTERM" >&2; exit 1; fi
}
trap 'if [ -n "$MOUNTPID" ] && kill -0 "$MOUNTPID" 2>/dev/null; then kill -TERM "$MOUNTPID"; wait "$MOUNTPID"; fi' EXIT

if [ -n "$LOCK" ]; then
  echo "waiting for $LOCK ($(date +%H:%M:%S))" >&2
  exec 9>>"$LOCK"; flock 9
  echo "took $LOCK ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
fi
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  rsstime find find_rss "$HS" find --to "$DEST" --name plex Preferences.xml
  ours_lines=$(grep -c '^  ' "$W/last.out")
  rsstime restic_find restic_find_rss restic find Preferences.xml
  dropcache; mountit
  timeit ls ls "$MP/plex/$LATEST"
  timeit cat cat "$MP/plex/$LATEST/$SMALL"
  dropcache
  timeit mount_big cat "$MP/big/latest/big.bin"
  unmountit
  dropcache
  rsstime dump_big dump_rss "$HS" dump --to "$DEST" --name big big.bin
  cmp -s "$W/last.out" "$BIG/src/big.bin" || { echo "hs-backup dump big.bin differs from the source" >&2; exit 1; }
  rm -f "$W/last.out"
  dropcache
  rsstime tar_big tar_rss tar -xzOf "$BIGARCHIVE" "$BIGMEMBER"
  rm -f "$W/last.out"
done
if [ -n "$LOCK" ]; then
  LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
  exec 9>&-   # the lock goes with the descriptor
  echo "released $LOCK ($(date +%H:%M:%S))" >&2
fi
[ "$ours_lines" -ge 1 ] || { echo "find printed no version of Preferences.xml" >&2; exit 1; }

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b))" "$1" "$2"; }
met() { python3 -c "import sys; v,t,op=float(sys.argv[1]),float(sys.argv[2]),sys.argv[3]; print('yes' if (v<=t if op=='le' else v>=t) else 'NO')" "$1" "$2" "$3"; }
mib() { awk -v k="$1" 'BEGIN{printf "%.0f MiB", k/1024}'; }
F=$(m find); RF=$(m restic_find); L=$(m ls); C=$(m cat); MB=$(m mount_big); DB=$(m dump_big); TB=$(m tar_big)
FQ=$(ratio "$F" "$RF"); TQ=$(ratio "$DB" "$MB")   # throughput ratio = dump time / mount time
DQ=$(ratio "$TB" "$DB")                           # dump throughput relative to GNU tar's
TABLE=$(cat <<EOF
| measure | hs-backup | reference | ratio | target | met |
|---|---|---|---|---|---|
| find Preferences.xml across $NBACKUPS backups vs \`restic find\` | $(printf '%.2f' "$F") s | $(printf '%.2f' "$RF") s | ${FQ}x | <= 0.5x | $(met "$FQ" 0.5 le) |
| find peak RSS (restic find) | $(mib "$(m find_rss)") | $(mib "$(m restic_find_rss)") | | <= 128 MiB | $(met "$(m find_rss)" 131072 le) |
| fresh mount, cache dropped: first \`ls\` of a backup's root | $(printf '%.3f' "$L") s | | | <= 1 s | $(met "$L" 1 le) |
| then \`cat\` of one small file | $(printf '%.3f' "$C") s | | | <= 0.1 s | $(met "$C" 0.1 le) |
| 1 GiB file through the mount vs \`hs-backup dump\` (cache dropped; throughput) | $(printf '%.2f' "$MB") s | $(printf '%.2f' "$DB") s | ${TQ}x | >= 0.8x | $(met "$TQ" 0.8 ge) |
| \`hs-backup dump\` of the 1 GiB file vs GNU \`tar -xzOf\` of its archive (cache dropped; throughput) | $(printf '%.2f' "$DB") s | $(printf '%.2f' "$TB") s | ${DQ}x | (reference) | |
| peak RSS: mount / dump / tar | $(mib "$(m mount_rss)") | $(mib "$(m dump_rss)") | $(mib "$(m tar_rss)") (tar) | | |
EOF
)
DESC="Set: \`mkplex.py $FILES\` backed up $NBACKUPS times with a change between backups (restic 0.14 repository of the same $NBACKUPS snapshots, its cache warm); a second set holding one 1 GiB random file. $ROUNDS interleaved rounds, medians (per round: find ${T[find]} s, restic find ${T[restic_find]} s; ls ${T[ls]} s; cat ${T[cat]} s; mount read ${T[mount_big]} s, dump ${T[dump_big]} s, tar ${T[tar_big]} s). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), shared (load average at the end: ${LOAD_END:-$(cut -d' ' -f1 /proc/loadavg)}). $(date -u +%Y-%m-%d)."
echo "$TABLE"
echo
echo "$DESC"
if [ -n "$WRITE" ]; then
  python3 - "$WRITE" "$TABLE" "$DESC" <<'EOF'
import re, sys
path, table, desc = sys.argv[1:4]
text = open(path).read()
section = "## Browse\n\n`bench/browse-bench.sh` (run: `flock /work/bench.lock bench/browse-bench.sh --write BENCHMARKS.md`).\n\n" + desc + "\n\n" + table + "\n"
if re.search(r"^## Browse\n", text, flags=re.M):
    text = re.sub(r"^## Browse\n.*?(?=^## |^<!-- |\Z)", section + "\n", text, flags=re.M | re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
EOF
fi
