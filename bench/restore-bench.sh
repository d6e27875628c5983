#!/usr/bin/env bash
# Restore benchmark: `hs-restore --archive` and `hs-restore --from` against `tar -xzf` of the
# same archive, measured in the same run, interleaved, medians, ratios; peak RSS of each.
#
#   Plex-like tree (bench/mkplex.py N, default 1,000,000 small files in ~N/100 bundles):
#     restore wall time <= 0.6x tar -xzf, restore peak RSS <= 128 MiB
#   mkcorpus.py --scale 2 (../shared/bench):  restore wall time <= 0.7x tar -xzf
#
# Usage: bench/restore-bench.sh [--files N] [--scale N] [--rounds N] [--only plex,corpus] [--keep] [--fresh-ext4]
#   --keep   keep the generated trees, archives and backup sets in $BENCH_DIR (default: deleted).
#   --fresh-ext4  restore every time into a freshly made ext4 (a loop-mounted 16 GiB image,
#            as root): on a disk where millions of files were just deleted, ext4's inode
#            allocation (`recently_deleted`, `find_inode_bit`) dominates and favours whichever
#            tool runs later; a fresh file system measures the tools, not that history.
#            Its inode count is sized for the tree (the default would not hold 1M files).
# Each round also measures the floor: bench/create-floor.c creates the same files with the
# fewest system calls, content already in memory, 2 threads (no decompression, no parsing).
# Needs: a release build (made here), python3, GNU tar, a C compiler, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
FILES=1000000; SCALE=2; ROUNDS=3; ONLY="plex,corpus"; KEEP=0; FRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --fresh-ext4) FRESH=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
MKCORPUS=""
for c in ../shared/bench/mkcorpus.py /work/shared/bench/mkcorpus.py; do [ -f "$c" ] && MKCORPUS=$c && break; done
if want corpus && [ -z "$MKCORPUS" ]; then echo "mkcorpus.py not found (../shared/bench/mkcorpus.py)" >&2; exit 2; fi

swift build -c release --product hs-backup >/dev/null
swift build -c release --product hs-restore >/dev/null
BIN=$(swift build -c release --show-bin-path)
W=${BENCH_DIR:-/tmp/hs-restore-bench}
mkdir -p "$W"
cc -O2 -Wall -pthread -o "$W/create-floor" bench/create-floor.c
cleanup() {
  if mountpoint -q "$W/out.mnt" 2>/dev/null; then umount "$W/out.mnt"; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$W"; fi
}
trap cleanup EXIT

# run NAME CMD...: wall seconds and peak RSS (KiB) of CMD into $W/NAME.times (one line per round).
run() {
  local name=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null 2>"$W/last.err" || { echo "$name failed: $(tail -3 "$W/last.err")" >&2; exit 1; }
  cat "$W/time.out" >> "$W/$name.times"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$2" '{print $c}' "$W/$1.times" | median; }

bench_tree() {
  local label=$1 tree=$2 target_ratio=$3 rss_limit=$4
  local tgz="$W/$label.tar.gz" dest="$W/$label-dest"
  [ -f "$tgz" ] || tar -czf "$tgz" -C "$tree" .
  [ -d "$dest/b" ] || "$BIN/hs-backup" --source "$tree" --to "$dest" --name b --full >/dev/null
  rm -f "$W"/"$label"-*.times
  local inodes=0
  if [ $FRESH = 1 ]; then inodes=$(( $(find "$tree/" | wc -l) * 3 / 2 + 100000 )); fi   # the default would not hold 1M files
  for r in $(seq 1 "$ROUNDS"); do
    # Alternate the order so no tool always runs on a warm (or cold) cache.
    for tool in $( [ $((r % 2)) = 1 ] && echo "tar archive from floor" || echo "floor from archive tar" ); do
      rm -rf "$W/out"
      if [ $FRESH = 1 ]; then
        if mountpoint -q "$W/out.mnt"; then umount "$W/out.mnt"; fi
        mkdir -p "$W/out.mnt"; truncate -s 16G "$W/out.img"
        mkfs.ext4 -q -F -N "$inodes" "$W/out.img"
        mount -o loop "$W/out.img" "$W/out.mnt"; mkdir "$W/out.mnt/o"; ln -sfn "$W/out.mnt/o" "$W/out"
      fi
      case $tool in
        tar) mkdir -p "$W/out/"; run "$label-tar" tar -xzf "$tgz" -C "$W/out/" ;;
        archive) run "$label-archive" "$BIN/hs-restore" --archive "$tgz" --to "$W/out/" ;;
        from) run "$label-from" "$BIN/hs-restore" --from "$dest" --name b --to "$W/out/" ;;
        floor) sync; "$W/create-floor" "$(readlink -f "$tree")/" "$W/out/" 2 2>/dev/null | awk '{print $1, 0}' >> "$W/$label-floor.times" ;;
      esac
    done
    echo "round $r ($label, load $(cut -d' ' -f1 /proc/loadavg)): tar=$(tail -1 "$W/$label-tar.times") archive=$(tail -1 "$W/$label-archive.times") from=$(tail -1 "$W/$label-from.times") floor=$(tail -1 "$W/$label-floor.times")" >&2
  done
  rm -rf "$W/out"
  if [ $FRESH = 1 ] && mountpoint -q "$W/out.mnt"; then umount "$W/out.mnt"; rm -f "$W/out.img"; fi
  local tar_s; tar_s=$(col "$label-tar" 1)
  awk -v l="$label" -v s="$(col "$label-floor" 1)" -v t="$tar_s" 'BEGIN {
    printf "| %s: floor (bench/create-floor.c: create the files, content in memory, 2 threads) | %.2f s | tar -xzf: %.2f s | %.2fx | | |\n", l, s, t, s / t }'
  for way in archive from; do
    local s rss; s=$(col "$label-$way" 1); rss=$(col "$label-$way" 2)
    awk -v l="$label" -v w="$way" -v s="$s" -v t="$tar_s" -v tr="$target_ratio" 'BEGIN {
      r = s / t; printf "| %s: hs-restore --%s wall time | %.2f s | tar -xzf: %.2f s | %.2fx | <= %.1fx | %s |\n", l, w, s, t, r, tr, (r <= tr ? "yes" : "NO") }'
    awk -v l="$label" -v w="$way" -v k="$rss" -v lim="$rss_limit" -v tk="$(col "$label-tar" 2)" 'BEGIN {
      m = k / 1024; printf "| %s: hs-restore --%s peak RSS | %.1f MiB | tar -xzf: %.1f MiB | | %s | %s |\n", l, w, m, tk / 1024,
        (lim > 0 ? "<= " lim " MiB" : ""), (lim > 0 ? (m <= lim ? "yes" : "NO") : "") }'
  done
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| measure | hs-restore | reference | ratio | target | ok |"
echo "|---|---|---|---|---|---|"
if want plex; then
  [ -f "$W/plex/.mkplex-done" ] || python3 bench/mkplex.py "$FILES" "$W/plex" >/dev/null
  bench_tree "plex-$FILES" "$W/plex" 0.6 128
fi
if want corpus; then
  [ -f "$W/corpus.done" ] || { rm -rf "$W/corpus"; python3 "$MKCORPUS" "$W/corpus" --scale "$SCALE" >/dev/null; touch "$W/corpus.done"; }
  bench_tree "corpus-scale$SCALE" "$W/corpus" 0.7 0
fi
