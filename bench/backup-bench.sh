#!/usr/bin/env bash
# Backup benchmark: hs-backup / hs-restore against the reference tools, measured in the same
# run, interleaved (ours, reference, ours, reference, ...), medians, ratios.
#
#   full backup to a local dir      vs  tar -cf - | pigz -p2 -6        target <= 0.5x
#   no-change incremental           vs  GNU tar --listed-incremental level 1  <= 0.25x
#                                   vs  restic backup re-run           target <= 0.1x
#   full restore                    vs  tar -xzf                       target <= 0.7x
#   full backup to nfs:// (loopback nfs-ganesha)  vs  same to a local dir     <= 1.3x
#   200k-file tree, no-change incremental vs GNU tar level 1, and against the one-thread
#   lstat walk (the floor of stat-based change detection; the old 0.25x target is retired)
#   Plex-like tree (bench/mkplex.py, --plex N files; only with --only ...,plex):
#     full backup vs tar -cf - | pigz -p2 -6 <= 0.6x; no-change incremental vs GNU tar
#     level 1 <= 0.6x; peak RSS of both <= 128 MiB (and not growing with N)
#   stress tree (--stress N tiny files of ~30 bytes, 100 per directory; only with --only ...,stress):
#     full backup vs tar -cf - | pigz -p2 -6 <= 0.7x; no-change vs GNU tar level 1 <= 0.8x;
#     cold cache (echo 3 > /proc/sys/vm/drop_caches before every run of either tool,
#     only with --only ...,stress,cold): full and no-change <= 0.6x
#     floor rows (bench/backup-floor.c, 1/2/4 threads, same round): only the system calls a backup
#     must make per file, against the same references; "reachable" says whether the target is
#     below the floor at all, "hs-backup / floor" how far ours is from it
#   sparse file (--only ...,sparse): 9 GiB apparent, 1 MiB of data: full backup vs
#     tar --sparse --posix -cf, wall <= 1.5x, archive size within 1% of tar's
#
# Usage: bench/backup-bench.sh [--rounds N] [--scale N] [--files200k N] [--plex N] [--stress N] [--only LIST] [--write FILE]
#   --only LIST    comma-separated subset of: full,incr,restore,nfs,200k,plex,stress,cold,sparse
#                  (default: full,incr,restore,nfs,200k).
#   --plex N       files in the Plex-like tree (default 1000000); the tree is deleted afterwards
#                  unless KEEP_PLEX=1 is set (e.g. when $BENCH_DIR/plex-N is a bind mount of a kept tree).
#   --stress N     files in the stress tree (default 1000000); kept in $BENCH_DIR for later runs.
#   --write FILE   replace the "Backup" section of FILE (BENCHMARKS.md) with the table.
# Needs: a release build (made here), python3, pigz, GNU tar, restic, nfs-ganesha + rpcbind.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
ROUNDS=3; SCALE=2; FILES200K=200000; PLEX=1000000; STRESS=1000000; WRITE=""; ONLY="full,incr,restore,nfs,200k"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --files200k) FILES200K=$2; shift 2 ;;
    --plex) PLEX=$2; shift 2 ;;
    --stress) STRESS=$2; shift 2 ;;
    --write) WRITE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
MKCORPUS=""
for c in ../shared/bench/mkcorpus.py /work/shared/bench/mkcorpus.py; do [ -f "$c" ] && MKCORPUS=$c && break; done
[ -n "$MKCORPUS" ] || { echo "mkcorpus.py not found (../shared/bench/mkcorpus.py)" >&2; exit 2; }

# Built as shipped (bench/build.sh).
. bench/build.sh
bench_build hs-backup hs-restore
W=${BENCH_DIR:-/tmp/hs-backup-bench}
mkdir -p "$W"
CORPUS="$W/corpus-scale$SCALE"
if { want full || want incr || want restore || want nfs || want 200k; } && [ ! -f "$CORPUS.done" ]; then
  rm -rf "$CORPUS"; python3 "$MKCORPUS" "$CORPUS" --scale "$SCALE" >/dev/null; touch "$CORPUS.done"
fi
TREE200K="$W/tree-$FILES200K"
if want 200k && [ ! -f "$TREE200K.done" ]; then
  rm -rf "$TREE200K"
  python3 - "$TREE200K" "$FILES200K" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "app%d" % (i % 10), "d%03d" % (i // 10 % 500))
    if i < 5000: os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.json" % i), "w") as f: f.write('{"id": %d}\n' % i)
EOF
  touch "$TREE200K.done"
fi

STRESSTREE="$W/stress-$STRESS"
if want stress && [ ! -f "$STRESSTREE.done" ]; then
  echo "making a stress tree of $STRESS tiny files (100 per directory)" >&2
  rm -rf "$STRESSTREE"
  python3 - "$STRESSTREE" "$STRESS" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100 // 100), "d%05d" % (i // 100))
    if i % 100 == 0: os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d.txt" % i), "w") as f: f.write("tiny file number %07d ok\n" % i)
EOF
  touch "$STRESSTREE.done"
fi
SPARSE="$W/sparse"
if want sparse && [ ! -f "$SPARSE.done" ]; then
  rm -rf "$SPARSE"; mkdir -p "$SPARSE"
  truncate -s 9G "$SPARSE/disk.img"
  head -c 1048576 /dev/urandom | dd of="$SPARSE/disk.img" bs=1M seek=4096 conv=notrunc status=none
  touch "$SPARSE.done"
fi
if want sparse; then
  cc -O2 -shared -fPIC -o "$W/nofsync.so" bench/nofsync.c
  # The floor rows of the sparse file (bench/sparse-floor.c; hs-backup's own SHA-256 code
  # compiled in) and three Swift hellos linked as the tools are (Package.swift's toolLinkerSettings:
  # static Swift stdlib, PIE, lld, --no-export-dynamic): without Foundation, importing only
  # FoundationEssentials, and importing Foundation as the tools do.
  cc -O2 -pthread -D_Nonnull= -D_Nullable= -ISources/CCrypto/include -ISources/CDlopen/include -o "$W/sparse-floor" bench/sparse-floor.c Sources/CCrypto/ccrypto.c Sources/CDlopen/hs_dlopen.c -ldeflate -ldl
  for h in hello hello-essentials hello-foundation; do
    swiftc -O -static-stdlib -use-ld=lld -Xlinker --no-export-dynamic -module-cache-path "$W/module-cache" -o "$W/$h" "bench/start-floor/$h.swift"
  done
fi
if want stress; then cc -O2 -pthread -o "$W/backup-floor" bench/backup-floor.c; fi
FLOOR_THREADS="1 2 4"
# Cold cache: every run of either tool starts with the page, dentry and inode caches dropped.
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

PLEXTREE="$W/plex-$PLEX"
if want plex; then
  echo "making a Plex-like tree of $PLEX files (bench/mkplex.py)" >&2
  python3 bench/mkplex.py "$PLEX" "$PLEXTREE" >&2
fi

# now: seconds since the epoch with ns.
now() { date +%s.%N; }
declare -A T
record() { T[$1]="${T[$1]:-} $2"; }
timeit() { # name cmd...
  local name=$1; shift
  local a b; a=$(now); "$@" >/dev/null 2>"$W/last.err" || { echo "FAILED: $name: $*" >&2; cat "$W/last.err" >&2; exit 1; }
  b=$(now); record "$name" "$(awk "BEGIN{print $b - $a}")"
}
rsstime() { # name rss-name cmd...: wall time and peak RSS (KiB, the largest process)
  local name=$1 rname=$2; shift 2
  local a b; a=$(now)
  /usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>"$W/last.err" || { echo "FAILED: $name: $*" >&2; cat "$W/last.err" >&2; exit 1; }
  b=$(now); record "$name" "$(awk "BEGIN{print $b - $a}")"; record "$rname" "$(tail -1 "$W/rss")"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# --- nfs-ganesha on loopback (its own config, free ports, stopped by pid) ---
GAN=""
start_ganesha() {
  command -v ganesha.nfsd >/dev/null || { echo "ganesha.nfsd missing: run scripts/bootstrap.sh, or leave nfs out of --only" >&2; exit 1; }
  scripts/services.sh
  local ports; ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(4)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  set -- $ports
  NFSPORT=$1; MNTPORT=$2
  mkdir -p "$W/ganesha/export"; chmod 777 "$W/ganesha/export"
  cat > "$W/ganesha/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 3, 4; NFS_Port = $1; MNT_Port = $2; NLM_Port = $3; Rquota_Port = $4;
  Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; }
EXPORT { Export_Id = 77; Path = $W/ganesha/export; Pseudo = /export; Access_Type = RW;
  Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
EOF
  ganesha.nfsd -f "$W/ganesha/ganesha.conf" -L "$W/ganesha/log" -p "$W/ganesha/pid"
  for _ in $(seq 1 60); do
    [ -s "$W/ganesha/pid" ] && nfs-ls "nfs://127.0.0.1$W/ganesha/export/?version=3&nfsport=$NFSPORT&mountport=$MNTPORT" >/dev/null 2>&1 && { GAN=$(cat "$W/ganesha/pid"); return 0; }
    sleep 0.5
  done
  echo "nfs-ganesha did not answer (log: $W/ganesha/log)" >&2; exit 1
}
stop_ganesha() {
  if [ -n "$GAN" ] && ! kill "$GAN" 2>/dev/null; then echo "nfs-ganesha (pid $GAN) had already exited" >&2; fi
  GAN=""
}
trap stop_ganesha EXIT
NFS_OK=0
if want nfs; then start_ganesha; NFS_OK=1; fi
NFSURL="nfs://127.0.0.1$W/ganesha/export?version=3&nfsport=${NFSPORT:-0}&mountport=${MNTPORT:-0}"
if [ $NFS_OK = 1 ] && ! "$BIN/hs-backup" list --to "$NFSURL" --name probe >/dev/null 2>"$W/last.err"; then
  echo "hs-backup cannot use $NFSURL: $(cat "$W/last.err")" >&2; exit 1
fi

m() { echo "${T[$1]:-}" | median; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1] or 'nan'),float(sys.argv[2] or 'nan'); print('%.2f' % (a/b) if b else 'n/a')" "$1" "$2"; }
verdict() { python3 -c "import sys; print('met' if float(sys.argv[1]) <= float(sys.argv[2]) else 'NOT met')" "$1" "$2" 2>/dev/null || echo "n/a"; }
row() { # label ours ref target
  local o r q; o=$(m "$2"); r=$(m "$3")
  if [ -z "$o" ] || [ -z "$r" ]; then printf '| %s | not measured | | | <= %s | |\n' "$1" "$4"; return; fi
  q=$(ratio "$o" "$r")
  printf '| %s | %.2f s | %.2f s | %s | <= %s | %s |\n' "$1" "$o" "$r" "$q" "$4" "$(verdict "$q" "$4")"
}
msrow() { # label ours ref: a floor row (milliseconds, no target)
  local o r; o=$(m "$2"); r=$(m "$3")
  [ -n "$o" ] && [ -n "$r" ] || return 0
  printf '| %s | %.1f ms | %.1f ms | %s | | |\n' "$1" "$(awk "BEGIN{print $o * 1000}")" "$(awk "BEGIN{print $r * 1000}")" "$(ratio "$o" "$r")"
}
floorrow() { # label floor ref ours target: the floor against the reference, and ours against the floor
  local f r o; f=$(m "$2"); r=$(m "$3"); o=$(m "$4")
  [ -n "$f" ] && [ -n "$r" ] || return 0
  printf '| %s | floor %.2f s | %.2f s | %s | %s reachable: %s | hs-backup / floor: %s |\n' "$1" "$f" "$r" "$(ratio "$f" "$r")" \
    "$5" "$(python3 -c "import sys; print('yes' if float(sys.argv[1]) / float(sys.argv[2]) <= float(sys.argv[3]) else 'NO (floor above it)')" "$f" "$r" "$5")" "$(ratio "$o" "$f")"
}
rssrow() { # label ours-rss ref-rss (KiB)
  local o r; o=$(m "$2"); r=$(m "$3")
  printf '| Plex-like %s files: %s, peak RSS (reference: the largest of its processes) | %.0f MiB | %.0f MiB | | <= 128 MiB | %s |\n' \
    "$PLEX" "$1" "$(awk "BEGIN{print $o / 1024}")" "$(awk "BEGIN{print $r / 1024}")" "$([ "$(awk "BEGIN{print ($o <= 131072)}")" = 1 ] && echo met || echo 'NOT met')"
}
# The sparse file's floor table: each part timed as a process by the same harness as tar (same
# rounds, interleaved), and the parts' own work (bench/sparse-floor.c --report: clock_gettime
# around the work, without the process start) summed with the start of a Swift tool into the
# floor of a correct hs-backup run: it must start, find and read the data extents, SHA-256 them
# (the manifest's hash), write them as gzip that GNU tar reads (stored blocks: the fastest valid
# output for incompressible data) and commit durably (archive, manifest, index fsynced before
# the manifest's rename, the directory fsynced after the renames). It need not do anything else.
us() { # median of the --report microseconds of one mode, as ms
  local v; v=$(awk -v k="$1" '$1 == k {print $2}' "$W/sparse-floor.report" 2>/dev/null | median)
  [ -n "$v" ] && awk "BEGIN{printf \"%.2f\", $v / 1000}"
}
sparse_floor_table() {
  [ -n "$(m floor_true)" ] || return 0
  local tar_ms start read sha store deflate commit_now commit_min commit_par commit floor
  tar_ms=$(awk "BEGIN{print $(m sparse_ref) * 1000}")
  echo
  echo "Sparse file: the floor (same run, same harness, load $(cut -d' ' -f1 /proc/loadavg)). Wall = the process as the harness times it (tar's own run: $(printf '%.1f' "$tar_ms") ms); work = bench/sparse-floor.c's own clock around the part, without the process start (medians)."
  echo
  echo "| part | wall | work | wall / tar |"
  echo "|---|---|---|---|"
  fl() { printf '| %s | %.1f ms | %s | %s |\n' "$1" "$(awk "BEGIN{print $(m "$2") * 1000}")" "${3:+$3 ms}" "$(ratio "$(m "$2")" "$(m sparse_ref)")"; }
  fl "\`tar --version\` (the harness and a process start)" floor_tarversion
  fl "C: \`/usr/bin/true\` (a C process start)" floor_true
  fl "Swift hello, the tools' link mode (static stdlib, PIE, lld), no Foundation" floor_hello
  fl "Swift hello importing only FoundationEssentials (Date, ProcessInfo, JSONEncoder)" floor_helloessentials
  fl "Swift hello importing Foundation, as the tools do (Date, ProcessInfo, JSONEncoder, String(format:))" floor_hellofoundation
  fl "\`hs-backup --version\`" start_ours
  fl "C: SEEK_DATA/SEEK_HOLE + pread of the 1 MiB" floor_read "$(us read)"
  fl "C: the same + SHA-256 (hs-backup's SHA-NI code)" floor_sha "$(us sha)"
  fl "C: the same read + gzip by libdeflate level 1 (hs-backup's level for compressible data)" floor_deflate1 "$(us deflate1)"
  fl "C: the same read + gzip of stored blocks (CRC-32 + copy; hs-backup's output for incompressible data)" floor_store "$(us store)"
  fl "C: durable commit as hs-backup 0.4.0 makes it (6 fsyncs: lock, archive, manifest, index temp, directory twice)" floor_commit_now "$(us commit-now)"
  fl "C: durable commit, the fsyncs a correct run needs (archive, manifest, index, then the directory)" floor_commit_minimal "$(us commit-minimal)"
  fl "C: the same, the three file fsyncs on three threads" floor_commit_parallel "$(us commit-parallel)"
  fl "C: the same + the SHA-256 of the stored gzip (the archive's own hash, which the index records)" floor_archsha "$(us archsha)"
  fl "C: durable commit of a first backup: the three file fsyncs on three threads, and DEST and DEST/b made durable after their mkdir" floor_commit_first "$(us commit-first)"
  fl "C: all of it in one process (read, SHA-256, stored gzip, correct commit)" floor_all "$(us all)"
  start=$(awk "BEGIN{print $(m floor_hello) * 1000}"); read=$(us read); sha=$(us sha); store=$(us store); deflate=$(us deflate1)
  commit_min=$(us commit-minimal); commit_par=$(us commit-parallel)
  commit=$(awk "BEGIN{print ($commit_par < $commit_min ? $commit_par : $commit_min)}")
  floor=$(awk "BEGIN{print $start + $sha + ($store - $read) + $commit}")
  printf '| **floor of a correct Swift hs-backup**: Swift hello (wall) + read and SHA-256 + stored gzip (its part) + the cheaper correct commit (work) | **%.1f ms** | | **%s** (target 1.5x = %.1f ms: %s) |\n' \
    "$floor" "$(ratio "$floor" "$tar_ms")" "$(awk "BEGIN{print $tar_ms * 1.5}")" \
    "$(python3 -c "import sys; print('reachable' if float(sys.argv[1]) <= 1.5 * float(sys.argv[2]) else 'NOT reachable: the floor is above it')" "$floor" "$tar_ms")"
  local h v
  for h in essentials:FoundationEssentials foundation:Foundation; do
    v=$(awk "BEGIN{print $floor - $start + $(m "floor_hello${h%%:*}") * 1000}")
    printf '| the same floor with %s linked (its Swift hello instead) | %.1f ms | | %s |\n' "${h#*:}" "$v" "$(ratio "$v" "$tar_ms")"
  done
  printf '| hs-backup (this run) / floor | %.1f ms | | %s |\n' "$(awk "BEGIN{print $(m sparse_ours) * 1000}")" "$(ratio "$(m sparse_ours)" "$(awk "BEGIN{print $floor / 1000}")")"
  # The floor above leaves out two things a correct run does: the archive's own SHA-256 and, on a
  # first backup (every run of the row above: DEST is new), making DEST and the set directory
  # durable. Both floors in full, each against the tar run of its own row.
  local archsha first_commit f1 f2 tar2_ms
  archsha=$(us archsha); first_commit=$(us commit-first)
  [ -n "$archsha" ] && [ -n "$first_commit" ] || return 0
  f1=$(awk "BEGIN{print $start + $archsha + $first_commit}")
  printf '| **complete floor of the row above (a first backup)**: Swift hello + read, SHA-256, stored gzip, archive SHA-256 + first-backup commit | **%.1f ms** | | **%s** (%s) |\n' \
    "$f1" "$(ratio "$f1" "$tar_ms")" "$(python3 -c "import sys; print('reachable' if float(sys.argv[1]) <= 1.5 * float(sys.argv[2]) else 'NOT reachable: above 1.5x')" "$f1" "$tar_ms")"
  printf '| hs-backup (first backup) / its complete floor | | | %s |\n' "$(ratio "$(m sparse_ours)" "$(awk "BEGIN{print $f1 / 1000}")")"
  [ -n "$(m sparse_ours_set)" ] || return 0
  tar2_ms=$(awk "BEGIN{print $(m sparse_ref_set) * 1000}")
  f2=$(awk "BEGIN{print $start + $archsha + $commit}")
  printf '| **complete floor of a full backup into a set that has backups**: Swift hello + read, SHA-256, stored gzip, archive SHA-256 + the cheaper commit | **%.1f ms** | | **%s** of that row'"'"'s tar (%.1f ms; %s) |\n' \
    "$f2" "$(ratio "$f2" "$tar2_ms")" "$tar2_ms" "$(python3 -c "import sys; print('reachable' if float(sys.argv[1]) <= 1.5 * float(sys.argv[2]) else 'NOT reachable: above 1.5x')" "$f2" "$tar2_ms")"
  printf '| hs-backup (into a set that has backups) / its complete floor | %.1f ms | | %s |\n' "$(awk "BEGIN{print $(m sparse_ours_set) * 1000}")" "$(ratio "$(m sparse_ours_set)" "$(awk "BEGIN{print $f2 / 1000}")")"
}
report() {
CORPUS_DESC="not made"; [ -d "$CORPUS" ] && CORPUS_DESC="$(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files"
PLEX_DESC=""; [ -f "$PLEXTREE/.mkplex-done" ] && PLEX_DESC=" Plex-like tree: $(cat "$PLEXTREE/.mkplex-done" | sed "s| in .*||")."
TABLE=$(
  echo "Corpus: \`mkcorpus.py --scale $SCALE\` ($CORPUS_DESC);$PLEX_DESC ${ROUNDS_DONE:-0} interleaved rounds, medians. Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)), shared with other builds (noisy; load average at the end: $(cut -d' ' -f1 /proc/loadavg))."
  echo
  echo "| measurement | hs-backup | reference | ratio | target | |"
  echo "|---|---|---|---|---|---|"
  row "full backup, local dir vs \`tar -cf - \| pigz -p2 -6\`" full_ours full_ref 0.5
  row "no-change incremental vs GNU tar level 1" incr_ours incr_tar 0.25
  row "no-change incremental vs restic re-run" incr_ours incr_restic 0.1
  row "full restore vs \`tar -xzf\`" restore_ours restore_ref 0.7
  row "full backup to nfs:// (loopback ganesha) vs local dir" nfs_ours local_ours 1.3
  if [ -n "$(m floor200k)" ]; then
    printf '| %s-file tree, no-change incremental | %.2f s | GNU tar l1 %.2f s | %s | (retired) | |\n' "$FILES200K" "$(m incr200k_ours)" "$(m incr200k_tar)" "$(ratio "$(m incr200k_ours)" "$(m incr200k_tar)")"
    printf '| %s-file tree: one-thread lstat walk (`find -printf`), the floor of stat-based change detection | | %.2f s | tar l1 / floor: %s, ours / floor: %s | | |\n' \
      "$FILES200K" "$(m floor200k)" "$(ratio "$(m incr200k_tar)" "$(m floor200k)")" "$(ratio "$(m incr200k_ours)" "$(m floor200k)")"
    printf '| corpus: one-thread lstat walk (`find -printf`) | | %.2f s | | | |\n' "$(m floorcorpus)"
  fi
  rss=$(m rss200k); if [ -n "$rss" ]; then printf '| %s-file tree, no-change incremental peak RSS | %.0f MiB | | | | |\n' "$FILES200K" "$(awk "BEGIN{print $rss / 1024}")"; fi
  if [ -n "$(m stress_full_ours)" ]; then
    row "stress tree $STRESS tiny files: full backup vs \`tar -cf - \| pigz -p2 -6\`" stress_full_ours stress_full_ref 0.7
    row "stress tree $STRESS tiny files: no-change incremental vs GNU tar level 1" stress_incr_ours stress_incr_tar 0.8
    for t in $FLOOR_THREADS; do
      floorrow "stress floor, threads $t: getdents, openat O_NOFOLLOW, fstat, read, close (bench/backup-floor.c) vs \`tar -cf - \| pigz -p2 -6\`" "floor_read_$t" stress_full_ref stress_full_ours 0.7
      floorrow "stress floor, threads $t: the same + flistxattr vs \`tar -cf - \| pigz -p2 -6\`" "floor_xattr_$t" stress_full_ref stress_full_ours 0.7
    done
    for t in $FLOOR_THREADS; do
      floorrow "stress floor, threads $t: getdents, fstatat per entry (a no-change run's calls) vs GNU tar level 1" "floor_stat_$t" stress_incr_tar stress_incr_ours 0.8
    done
  fi
  if [ -n "$(m cold_full_ours)" ]; then
    row "stress tree, cold cache: full backup vs \`tar -cf - \| pigz -p2 -6\`" cold_full_ours cold_full_ref 0.6
    row "stress tree, cold cache: no-change incremental vs GNU tar level 1" cold_incr_ours cold_incr_tar 0.6
  fi
  if [ -n "$(m sparse_ours)" ]; then
    row "9 GiB sparse file (1 MiB data): full backup vs \`tar --sparse --posix -cf\`" sparse_ours sparse_ref 1.5
    printf '| 9 GiB sparse file: archive size | %s bytes | %s bytes | %s | <= 1.01 | %s |\n' "$(m sparse_size_ours)" "$(m sparse_size_ref)" \
      "$(python3 -c "import sys; print('%.4f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$(m sparse_size_ours)" "$(m sparse_size_ref)")" \
      "$(python3 -c "import sys; print('met' if abs(float(sys.argv[1]) / float(sys.argv[2]) - 1) <= 0.01 else 'NOT met')" "$(m sparse_size_ours)" "$(m sparse_size_ref)")"
    msrow "9 GiB sparse file: a full backup into a set that has backups (every night after the first; no directory to make) vs tar (its own runs; target 1.5x)" sparse_ours_set sparse_ref_set
    msrow "floor: \`hs-backup --version\` (process start and exit) vs tar's whole run" start_ours sparse_ref
    msrow "floor: a run of an empty directory (start, lock, manifest, index and archive fsynced, renames) vs tar" empty_ours sparse_ref
    msrow "the sparse run with fsync/fdatasync no-ops (LD_PRELOAD bench/nofsync.c) vs tar" sparse_nosync sparse_ref
    msrow "the sparse run vs tar made durable (\`tar ... && sync FILE\`, in bash -c)" sparse_ours sparse_ref_durable
    sparse_floor_table
  fi
  if [ -n "$(m plex_full_ours)" ]; then
    row "Plex-like $PLEX files: full backup vs \`tar -cf - \| pigz -p2 -6\`" plex_full_ours plex_full_ref 0.6
    row "Plex-like $PLEX files: no-change incremental vs GNU tar level 1" plex_incr_ours plex_incr_tar 0.6
    printf '| Plex-like %s files: one-thread lstat walk (`find -printf`) | | %.2f s | ours incr / floor: %s | | |\n' "$PLEX" "$(m plex_floor)" "$(ratio "$(m plex_incr_ours)" "$(m plex_floor)")"
    rssrow "full backup" plex_full_rss plex_full_ref_rss
    rssrow "no-change incremental" plex_incr_rss plex_incr_tar_rss
  fi
  echo
  echo "Per round, seconds (ours / reference):"
  for pair in "full_ours full_ref full backup" "incr_ours incr_tar incremental vs tar" "incr_ours incr_restic incremental vs restic" \
              "restore_ours restore_ref restore" "nfs_ours local_ours nfs vs local" "incr200k_ours incr200k_tar 200k incremental" \
              "stress_full_ours stress_full_ref stress full" "stress_incr_ours stress_incr_tar stress incremental" \
              "floor_read_1 stress_full_ref stress floor 1 thread" "floor_read_2 stress_full_ref stress floor 2 threads" \
              "floor_read_4 stress_full_ref stress floor 4 threads" "floor_xattr_2 stress_full_ref stress floor+xattr 2 threads" \
              "floor_stat_2 stress_incr_tar stress stat floor 2 threads" \
              "cold_full_ours cold_full_ref cold full" "cold_incr_ours cold_incr_tar cold incremental" \
              "plex_full_ours plex_full_ref plex full" "plex_incr_ours plex_incr_tar plex incremental" "sparse_ours sparse_ref sparse" \
              "empty_ours sparse_ref empty-directory run vs tar of the sparse file" "sparse_nosync sparse_ref sparse without fsync" "sparse_ours_set sparse_ref_set sparse into a set that has backups"; do
    set -- $pair; a=$1; b=$2; shift 2
    [ -n "${T[$a]:-}" ] && [ -n "${T[$b]:-}" ] && echo "- $*:$(paste -d/ <(echo ${T[$a]} | tr ' ' '\n') <(echo ${T[$b]} | tr ' ' '\n') | awk -F/ '{printf " %.2f/%.2f (%.2f)", $1, $2, $1/$2}')"
  done
  echo
)
echo "$TABLE"
if [ -n "$WRITE" ]; then
  python3 - "$WRITE" "$TABLE" <<'EOF'
import sys, re, os
path, table = sys.argv[1], sys.argv[2]
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
section = "## Backup\n\n`bench/backup-bench.sh` (run: `bench/backup-bench.sh --write BENCHMARKS.md`).\n\n" + table + "\n"
if re.search(r"^## Backup\n", text, re.M):
    text = re.sub(r"^## Backup\n.*?(?=^## |^<!-- |\Z)", section + "\n", text, flags=re.M | re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
EOF
fi
}

export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$W/restic-cache"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  rm -rf "$W/dest" "$W/ref.tgz" "$W/out" "$W/out-ref" "$W/restic" "$W/snar"*
  sync
  # full backup: ours vs tar | pigz, interleaved (the restore and incremental need it too)
  if want full; then
    sync; timeit full_ours "$BIN/hs-backup" --source "$CORPUS" --to "$W/dest" --name b --full
    sync; timeit full_ref bash -c "tar -cf - -C '$CORPUS' . | pigz -p2 -6 > '$W/ref.tgz'"
  elif want incr || want restore; then
    "$BIN/hs-backup" --source "$CORPUS" --to "$W/dest" --name b --full >/dev/null
    want restore && tar -cf - -C "$CORPUS" . | pigz -p2 -6 > "$W/ref.tgz"
  fi
  # no-change incremental: ours vs GNU tar level 1 vs restic re-run
  if want incr; then
    tar -cf "$W/l0.tar" -g "$W/snar" -C "$CORPUS" .
    restic init -q -r "$W/restic" >/dev/null; restic -q -r "$W/restic" backup "$CORPUS" >/dev/null
    timeit incr_ours "$BIN/hs-backup" --source "$CORPUS" --to "$W/dest" --name b
    cp "$W/snar" "$W/snar1"
    timeit incr_tar tar -cf "$W/l1.tar" -g "$W/snar1" -C "$CORPUS" .
    timeit incr_restic restic -q -r "$W/restic" backup "$CORPUS"
  fi
  # full restore: ours vs tar -xzf
  # Each timed restore starts with no dirty pages (sync), and the order alternates per round:
  # the rounds' large deletes make ext4's inode allocation slower for whoever comes first.
  if want restore; then
    mkdir -p "$W/out-ref"
    if [ $((r % 2)) = 1 ]; then
      sync; timeit restore_ours "$BIN/hs-restore" --from "$W/dest" --name b --to "$W/out"
      sync; timeit restore_ref tar -xzf "$W/ref.tgz" -C "$W/out-ref"
    else
      sync; timeit restore_ref tar -xzf "$W/ref.tgz" -C "$W/out-ref"
      sync; timeit restore_ours "$BIN/hs-restore" --from "$W/dest" --name b --to "$W/out"
    fi
    rm -rf "$W/out" "$W/out-ref"
  fi
  # nfs vs local full backup
  if [ $NFS_OK = 1 ] && want nfs; then
    rm -rf "$W/ganesha/export/"*
    timeit nfs_ours "$BIN/hs-backup" --source "$CORPUS" --to "$NFSURL" --name b --full
  fi
  if [ $NFS_OK = 1 ] && want nfs; then
    rm -rf "$W/dest2"
    timeit local_ours "$BIN/hs-backup" --source "$CORPUS" --to "$W/dest2" --name b --full
    rm -rf "$W/dest2" "$W/ganesha/export/"*
  fi
  rm -rf "$W/dest" "$W/restic" "$W/l0.tar" "$W/l1.tar" "$W/ref.tgz"
  # 200k files: no-change incremental vs GNU tar level 1, peak RSS
  if want 200k; then
    rm -rf "$W/dest200k" "$W/snar200k"*
    "$BIN/hs-backup" --source "$TREE200K" --to "$W/dest200k" --name b >/dev/null
    tar -cf "$W/l0-200k.tar" -g "$W/snar200k" -C "$TREE200K" .
    a=$(now); /usr/bin/time -f %M -o "$W/rss" "$BIN/hs-backup" --source "$TREE200K" --to "$W/dest200k" --name b >/dev/null; b=$(now)
    record incr200k_ours "$(awk "BEGIN{print $b - $a}")"; record rss200k "$(cat "$W/rss")"
    cp "$W/snar200k" "$W/snar200k1"
    timeit incr200k_tar tar -cf "$W/l1-200k.tar" -g "$W/snar200k1" -C "$TREE200K" .
    # The floor of any stat-based change detection: one lstat per entry, one thread.
    timeit floor200k find "$TREE200K" -printf '%s %T@ %C@ %m %U %G\n'
    timeit floorcorpus find "$CORPUS" -printf '%s %T@ %C@ %m %U %G\n'
    rm -rf "$W/dest200k" "$W/l0-200k.tar" "$W/l1-200k.tar"
  fi
  # Plex-like tree: full backup and no-change incremental with peak RSS, against tar | pigz
  # and GNU tar level 1 (their RSS too), and the one-thread lstat walk.
  if want plex; then
    rm -rf "$W/destplex" "$W/snarplex"* "$W/plex.tgz"
    # Warm for both, as for the stress tree below: after the cold rows of the round before (or
    # a freshly made tree, or another bench's) ours ran first and read the tree from disk for
    # both (2026-12-06: 56 s against tar | pigz's 26 s; warm by hand the same minute 13.5-15.5 s).
    tar -cf - -C "$PLEXTREE" . | cat > /dev/null
    sync; rsstime plex_full_ours plex_full_rss "$BIN/hs-backup" --source "$PLEXTREE" --to "$W/destplex" --name b --full
    sync; rsstime plex_full_ref plex_full_ref_rss bash -c "tar -cf - -C '$PLEXTREE' . | pigz -p2 -6 > '$W/plex.tgz'"
    rm -f "$W/plex.tgz"
    tar -cf /dev/null -g "$W/snarplex" -C "$PLEXTREE" .
    rsstime plex_incr_ours plex_incr_rss "$BIN/hs-backup" --source "$PLEXTREE" --to "$W/destplex" --name b
    cp "$W/snarplex" "$W/snarplex1"
    rsstime plex_incr_tar plex_incr_tar_rss tar -cf "$W/l1-plex.tar" -g "$W/snarplex1" -C "$PLEXTREE" .
    timeit plex_floor find "$PLEXTREE" -printf '%s %T@ %C@ %m %U %G\n'
    rm -rf "$W/destplex" "$W/snarplex"* "$W/l1-plex.tar"
  fi
  # Stress tree: 1M tiny files, warm (ours, then the reference) and cold.
  if want stress; then
    rm -rf "$W/deststress" "$W/snarstress"* "$W/stress.tgz"
    # Warm means warm for both: after the cold rows of the round before (or another bench's
    # big tree) the files' pages are gone, and whichever tool ran first read them from disk
    # for both (ours 42-46 s, then tar | pigz 11 s). Read every file once first (through cat:
    # GNU tar skips the reads when its archive is /dev/null).
    tar -cf - -C "$STRESSTREE" . | cat > /dev/null
    sync; timeit stress_full_ours "$BIN/hs-backup" --source "$STRESSTREE" --to "$W/deststress" --name b --full
    sync; timeit stress_full_ref bash -c "tar -cf - -C '$STRESSTREE' . | pigz -p2 -6 > '$W/stress.tgz'"
    rm -f "$W/stress.tgz"
    # The floor (bench/backup-floor.c): only the system calls a full backup must make per file
    # (getdents64, openat O_NOFOLLOW, fstat, read, close; then with flistxattr too), output
    # discarded, at 1/2/4 threads; and a no-change run's (fstatat per entry). Same run, same
    # warm tree as the rows they are compared with.
    for t in $FLOOR_THREADS; do
      timeit "floor_read_$t" "$W/backup-floor" "$STRESSTREE" "$t" read
      timeit "floor_xattr_$t" "$W/backup-floor" "$STRESSTREE" "$t" read-xattr
    done
    tar -cf /dev/null -g "$W/snarstress" -C "$STRESSTREE" .
    timeit stress_incr_ours "$BIN/hs-backup" --source "$STRESSTREE" --to "$W/deststress" --name b
    cp "$W/snarstress" "$W/snarstress1"
    timeit stress_incr_tar tar -cf /dev/null -g "$W/snarstress1" -C "$STRESSTREE" .
    for t in $FLOOR_THREADS; do timeit "floor_stat_$t" "$W/backup-floor" "$STRESSTREE" "$t" stat; done
    if want cold; then
      rm -rf "$W/deststress"
      cold; timeit cold_full_ours "$BIN/hs-backup" --source "$STRESSTREE" --to "$W/deststress" --name b --full
      cold; timeit cold_full_ref bash -c "tar -cf - -C '$STRESSTREE' . | pigz -p2 -6 > '$W/stress.tgz'"
      rm -f "$W/stress.tgz"
      cold; timeit cold_incr_ours "$BIN/hs-backup" --source "$STRESSTREE" --to "$W/deststress" --name b
      cp "$W/snarstress" "$W/snarstress1"
      cold; timeit cold_incr_tar tar -cf /dev/null -g "$W/snarstress1" -C "$STRESSTREE" .
    fi
    rm -rf "$W/deststress" "$W/snarstress"*
  fi
  # Sparse file: ours vs tar --sparse --posix (both write a file; ours compresses the data).
  # Each is 5-150 ms: 5 alternations per round. The floor rows say where a run's fixed cost
  # goes: the process start alone (--version), a run of an empty directory, the sparse run with
  # fsync/fdatasync made no-ops (bench/nofsync.c: what durability costs), and tar made as
  # durable as ours (`sync FILE` fsyncs the archive; ours also fsyncs manifest, index, dirs).
  if want sparse; then
    mkdir -p "$W/emptysrc"
    [ "$r" = 1 ] && rm -f "$W/sparse-floor.report"
    for k in 1 2 3 4 5; do
      rm -rf "$W/destsparse" "$W/sparse.tar"
      sync; timeit sparse_ours "$BIN/hs-backup" --source "$SPARSE" --to "$W/destsparse" --name b --full
      sync; timeit sparse_ref tar --sparse --posix -cf "$W/sparse.tar" -C "$SPARSE" disk.img
      [ "$k" = 1 ] && record sparse_size_ours "$(stat -c %s "$W"/destsparse/b/*.tar.gz)"
      [ "$k" = 1 ] && record sparse_size_ref "$(stat -c %s "$W/sparse.tar")"
      rm -rf "$W/destsparse" "$W/sparse.tar" "$W/destempty"
      sync; timeit sparse_nosync env LD_PRELOAD="$W/nofsync.so" "$BIN/hs-backup" --source "$SPARSE" --to "$W/destsparse" --name b --full
      sync; timeit sparse_ref_durable bash -c "tar --sparse --posix -cf '$W/sparse.tar' -C '$SPARSE' disk.img && sync '$W/sparse.tar'"
      timeit start_ours "$BIN/hs-backup" --version
      sync; timeit empty_ours "$BIN/hs-backup" --source "$W/emptysrc" --to "$W/destempty" --name b --full
      # Every night after the first: a full backup into a set that has backups (no directory to
      # make). Two runs in the same second are not a problem: a new id is always after the newest.
      "$BIN/hs-backup" --source "$SPARSE" --to "$W/destsparse" --name b --full -q
      sync; timeit sparse_ours_set "$BIN/hs-backup" --source "$SPARSE" --to "$W/destsparse" --name b --full
      sync; timeit sparse_ref_set tar --sparse --posix -cf "$W/sparse.tar" -C "$SPARSE" disk.img
      rm -rf "$W/destsparse" "$W/sparse.tar" "$W/destempty"
      # The floor parts (see sparse_floor_table), each as a process, beside tar in the same round.
      FL="$W/sparse-floor"; REP=(--report "$W/sparse-floor.report")
      timeit floor_tarversion tar --version
      timeit floor_true /usr/bin/true
      timeit floor_hello "$W/hello"
      timeit floor_helloessentials "$W/hello-essentials"
      timeit floor_hellofoundation "$W/hello-foundation"
      timeit floor_read "$FL" read "$SPARSE/disk.img" "${REP[@]}"
      timeit floor_sha "$FL" sha "$SPARSE/disk.img" "${REP[@]}"
      timeit floor_deflate1 "$FL" deflate1 "$SPARSE/disk.img" "${REP[@]}"
      timeit floor_store "$FL" store "$SPARSE/disk.img" "${REP[@]}"
      timeit floor_archsha "$FL" archsha "$SPARSE/disk.img" "${REP[@]}"
      for kind in now minimal parallel first; do
        rm -rf "$W/destfloor"; sync; timeit "floor_commit_$kind" "$FL" commit "$W/destfloor" "$kind" "${REP[@]}"
      done
      rm -rf "$W/destfloor"; sync; timeit floor_all "$FL" all "$W/destfloor" "$SPARSE/disk.img" "${REP[@]}"
      gzip -dc "$W/destfloor/b/ID.tar.gz" | cmp -s - <(dd if="$SPARSE/disk.img" bs=1M skip=4096 count=1 status=none) \
        || { echo "FAILED: the floor's stored gzip does not hold the sparse file's data" >&2; exit 1; }
      rm -rf "$W/destfloor"
    done
  fi
  ROUNDS_DONE=$r
  report
done
if want plex && [ -z "${KEEP_PLEX:-}" ]; then rm -rf "$PLEXTREE"; fi

