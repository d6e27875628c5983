#!/usr/bin/env bash
# Encryption benchmark: an encrypted set (age, hs-backup run --recipient) against the same
# backup unencrypted, measured in the same run, interleaved (the order alternates per round),
# medians, ratios, peak RSS. The reference tools run in the same rounds:
#
#   full backup, encrypted   vs  full backup, unencrypted     target <= 1.1x
#   restore (--from), encrypted with --identity  vs  unencrypted   target <= 1.1x
#   full backup, encrypted   vs  `tar -cf - | pigz -p2 -6 | age -r KEY`   (reference, no target)
#   restore, encrypted       vs  `age -d -i KEY ARCHIVE | tar -xzf -` of the same encrypted
#                                full archive (the stock-tools restore; reference, no target)
#   for the corpus (mkcorpus.py --scale N) and the Plex-like tree (bench/mkplex.py, --plex N)
# Each row also gives the median CPU seconds (user + system, children included) of both sides:
# on a shared, loaded machine they move much less than wall times.
#
# Usage: bench/crypto-bench.sh [--rounds N] [--scale N] [--plex N] [--only corpus,plex] [--fresh-ext4] [--keep]
#   --fresh-ext4  restore every time into a freshly made ext4 (loop-mounted image), as
#                 bench/restore-bench.sh does; otherwise into a directory removed between runs.
#   --keep        keep the work directory (trees, sets) for the next run.
# Needs: a release build (made here), python3, age, age-keygen, GNU tar, pigz. Run it under
# `flock /work/bench.lock`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
ROUNDS=3; SCALE=2; PLEX=1000000; ONLY="corpus,plex"; FRESH=0; KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --plex) PLEX=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --fresh-ext4) FRESH=1; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
MKCORPUS=""
for c in ../shared/bench/mkcorpus.py /work/shared/bench/mkcorpus.py; do [ -f "$c" ] && MKCORPUS=$c && break; done
[ -n "$MKCORPUS" ] || { echo "mkcorpus.py not found (../shared/bench/mkcorpus.py)" >&2; exit 2; }

. bench/build.sh
bench_build hs-backup hs-restore
W=${BENCH_DIR:-/tmp/hs-crypto-bench}
mkdir -p "$W"
cleanup() {
  if mountpoint -q "$W/out.mnt" 2>/dev/null; then umount "$W/out.mnt"; fi
  rm -f "$W/out.img"
  if [ "$KEEP" = 0 ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
rm -f "$W/key.txt"
age-keygen -o "$W/key.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$W/key.txt")

# run NAME CMD...: wall seconds, peak RSS (KiB) and CPU seconds (user + system, children
# included) of CMD appended to $W/NAME.times.
run() {
  local name=$1; shift
  sync
  /usr/bin/time -f "%e %M %U %S" -o "$W/time.out" "$@" >/dev/null 2>"$W/last.err" || { echo "$name failed: $(tail -3 "$W/last.err")" >&2; exit 1; }
  cat "$W/time.out" >> "$W/$name.times"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$2" '{print (c == "cpu") ? $3 + $4 : $c}' "$W/$1.times" | median; }

# A fresh, empty restore target at $W/out.
fresh_target() { # inodes
  rm -rf "$W/out"
  if [ $FRESH = 1 ]; then
    if mountpoint -q "$W/out.mnt"; then umount "$W/out.mnt"; fi
    mkdir -p "$W/out.mnt"; rm -f "$W/out.img"; truncate -s 16G "$W/out.img"
    mkfs.ext4 -q -F -N "$1" "$W/out.img"
    mount -o loop "$W/out.img" "$W/out.mnt"; mkdir "$W/out.mnt/o"; ln -sfn "$W/out.mnt/o" "$W/out"
  else
    if [ -L "$W/out" ]; then rm -f "$W/out"; fi
    rm -rf "$W/out.dir"; mkdir -p "$W/out.dir"; ln -sfn "$W/out.dir" "$W/out"
  fi
}

# ROW label what a b target: one table row, medians of $W/label-what-a.times against -b.times.
row() {
  local label=$1 what=$2 a=$3 b=$4 target=$5 desc=$6
  awk -v l="$label" -v d="$desc" -v t="$target" -v e="$(col "$label-$what-$a" 1)" -v p="$(col "$label-$what-$b" 1)" \
      -v er="$(col "$label-$what-$a" 2)" -v pr="$(col "$label-$what-$b" 2)" \
      -v ec="$(col "$label-$what-$a" cpu)" -v pc="$(col "$label-$what-$b" cpu)" 'BEGIN {
    r = e / p; met = (t == "" ? "" : (r <= t + 0 ? "yes" : "NO"))
    printf "| %s: %s | %.2f s | %.2f s | %.2fx | %s | %s | %.2f / %.2f s (%.2fx) | %.0f / %.0f MiB |\n",
      l, d, e, p, r, (t == "" ? "reference" : "<= " t "x"), met, ec, pc, (pc > 0 ? ec / pc : 0), er / 1024, pr / 1024 }'
}

# Each round runs the three ways (plain, enc, ref) in a rotating order, backups then restores.
bench_tree() { # label tree
  local label=$1 tree=$2
  rm -f "$W/$label"-*.times
  local inodes; inodes=$(( $(find "$tree/" | wc -l) * 3 / 2 + 100000 ))
  for r in $(seq 1 "$ROUNDS"); do
    local order
    case $((r % 3)) in 1) order="plain enc ref" ;; 2) order="enc ref plain" ;; *) order="ref plain enc" ;; esac
    for way in $order; do
      rm -rf "$W/$label-$way" "$W/state-$label"
      case $way in
        plain) run "$label-backup-plain" "$BIN/hs-backup" run --source "$tree" --to "$W/$label-$way" --name b --full ;;
        enc) run "$label-backup-enc" "$BIN/hs-backup" run --source "$tree" --to "$W/$label-$way" --name b --full \
               --recipient "$RECIPIENT" --state-dir "$W/state-$label" ;;
        ref) mkdir -p "$W/$label-ref"
             run "$label-backup-ref" bash -c 'set -euo pipefail; tar -cf - -C "$1" . | pigz -p2 -6 | age -r "$2" -o "$3"' \
               ref "$tree" "$RECIPIENT" "$W/$label-ref/ref.tar.gz.age" ;;
      esac
    done
    # The stock-tools restore reads the encrypted set's own full archive (made above).
    local encarchive; encarchive=$(ls "$W/$label-enc/b/"*.tar.gz)
    for way in $order; do
      fresh_target "$inodes"
      case $way in
        plain) run "$label-restore-plain" "$BIN/hs-restore" --from "$W/$label-$way" --name b --to "$W/out/" ;;
        enc) run "$label-restore-enc" "$BIN/hs-restore" --from "$W/$label-$way" --name b --to "$W/out/" --identity "$W/key.txt" ;;
        ref) run "$label-restore-ref" bash -c 'set -euo pipefail; age -d -i "$1" "$2" | tar --numeric-owner -xzpf - -C "$3"' \
               ref "$W/key.txt" "$encarchive" "$W/out/" ;;
      esac
    done
    echo "round $r ($label, order $order, load $(cut -d' ' -f1 /proc/loadavg)):" \
         "backup plain=$(tail -1 "$W/$label-backup-plain.times") enc=$(tail -1 "$W/$label-backup-enc.times") ref=$(tail -1 "$W/$label-backup-ref.times")" \
         "restore plain=$(tail -1 "$W/$label-restore-plain.times") enc=$(tail -1 "$W/$label-restore-enc.times") ref=$(tail -1 "$W/$label-restore-ref.times")" >&2
  done
  rm -rf "$W/out" "$W/out.dir"
  row "$label" backup enc plain 1.1 "full backup, encrypted vs unencrypted"
  row "$label" restore enc plain 1.1 "restore --from, encrypted (--identity) vs unencrypted"
  row "$label" backup enc ref "" "full backup, encrypted vs \`tar -cf - \\| pigz -p2 -6 \\| age -r\`"
  row "$label" restore enc ref "" "restore, encrypted vs \`age -d -i KEY ARCHIVE \\| tar -xzf -\`"
}

echo "| measurement | hs-backup encrypted | other | ratio | target | met | CPU user+sys encrypted / other | peak RSS encrypted / other |"
echo "|---|---|---|---|---|---|---|---|"
if want corpus; then
  CORPUS="$W/corpus-scale$SCALE"
  if [ ! -f "$CORPUS.done" ]; then rm -rf "$CORPUS"; python3 "$MKCORPUS" "$CORPUS" --scale "$SCALE" >/dev/null; touch "$CORPUS.done"; fi
  bench_tree corpus "$CORPUS"
fi
if want plex; then
  PLEXTREE="$W/plex-$PLEX"
  if [ ! -f "$PLEXTREE/.mkplex-done" ]; then echo "making a Plex-like tree of $PLEX files (bench/mkplex.py)" >&2; python3 bench/mkplex.py "$PLEX" "$PLEXTREE" >&2; fi
  bench_tree "plex-$PLEX" "$PLEXTREE"
fi
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
