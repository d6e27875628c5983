#!/usr/bin/env bash
# Copy benchmark: `hs-backup copy` to an SFTP remote against `rclone copy` of the same files with
# the same number of parallel transfers, in the same run, interleaved (ours, reference, ours,
# reference, ...), medians, ratio of throughputs.
#
#   hs-backup copy --from DIR --to rclone:sftp:... --transfers T
#     vs  rclone copy DIR/SET sftp:... --transfers T          target: throughput >= 0.9x
#
# The remote is OpenSSH's sshd on 127.0.0.1 (its own keys, a free port), as in the tests.
# Both check every file after the upload with the server's MD5 (rclone copy by default, copy
# as its check); copy also hashes everything it reads (SHA-256 against the index).
#
# Usage: bench/copy-bench.sh [--rounds N] [--backups N] [--mib N] [--transfers T] [--write FILE]
#   --backups N   backups in the set (a full one, then incrementals), each adding --mib MiB of
#                 incompressible data (default 6 x 64 MiB).
#   --write FILE  replace the "Copy" section of FILE (BENCHMARKS.md) with the table.
# Run it under `flock /work/bench.lock` on a shared machine.
# Needs: a release build (made here), rclone, openssh-server (sshd, ssh-keygen).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
ROUNDS=3; BACKUPS=6; MIB=64; TRANSFERS=4; WRITE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --backups) BACKUPS=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --transfers) TRANSFERS=$2; shift 2 ;;
    --write) WRITE=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in rclone ssh-keygen; do command -v "$tool" >/dev/null || { echo "$tool missing: run scripts/bootstrap.sh" >&2; exit 1; }; done
SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] || { echo "sshd missing (openssh-server): run scripts/bootstrap.sh" >&2; exit 1; }

. bench/build.sh
bench_build hs-backup
HSB="$BIN/hs-backup"

WORK=$(mktemp -d /tmp/hs-copy-bench.XXXXXX)
SSHD_PID=""
cleanup() {
  if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- sshd on loopback: own host key, own client key, free port ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" > "$WORK/known_hosts"
cat > "$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200
MaxSessions 200
Subsystem sftp /usr/lib/openssh/sftp-server -u 0077
EOF
mkdir -p /run/sshd
"$SSHD" -f "$WORK/sshd_config" -E "$WORK/sshd.log"
for _ in $(seq 100); do [ -s "$WORK/sshd.pid" ] && break; sleep 0.1; done
SSHD_PID=$(cat "$WORK/sshd.pid")
export RCLONE_CONFIG="$WORK/rclone.conf"
cat > "$RCLONE_CONFIG" <<EOF
[sftp]
type = sftp
host = 127.0.0.1
port = $PORT
user = $(id -un)
key_file = $WORK/client_key
known_hosts_file = $WORK/known_hosts
shell_type = unix
md5sum_command = md5sum
sha1sum_command = sha1sum
EOF
rclone lsd "sftp:$WORK" >/dev/null

# --- the source set: BACKUPS backups, each adding MIB MiB that does not compress ---
mkdir -p "$WORK/appdata/app" "$WORK/remote"
for i in $(seq "$BACKUPS"); do
  head -c "${MIB}M" /dev/urandom > "$WORK/appdata/app/data$i.bin"
  HS_BACKUP_SQLITE_CAPTURE=0 "$HSB" run -q --source "$WORK/appdata" --to "$WORK/nas" --name io
done
FILES=$(find "$WORK/nas/io" -type f | wc -l)
BYTES=$(du -sb "$WORK/nas/io" | cut -f1)

now() { date +%s.%N; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ours=(); ref=()
for r in $(seq "$ROUNDS"); do
  t0=$(now)
  "$HSB" copy -q --from "$WORK/nas" --to "rclone:sftp:$WORK/remote/ours$r" --name io --transfers "$TRANSFERS"
  t1=$(now)
  rclone copy "$WORK/nas/io" "sftp:$WORK/remote/ref$r/io" --transfers "$TRANSFERS"
  t2=$(now)
  ours+=("$(awk "BEGIN {printf \"%.2f\", $t1 - $t0}")"); ref+=("$(awk "BEGIN {printf \"%.2f\", $t2 - $t1}")")
  # Both hold every byte: same files, same sizes.
  diff <(cd "$WORK/remote/ours$r/io" && find . -type f -printf '%P %s\n' | sort) \
       <(cd "$WORK/remote/ref$r/io" && find . -type f -printf '%P %s\n' | sort) >/dev/null
  rm -rf "$WORK/remote/ours$r" "$WORK/remote/ref$r"
  echo "round $r: hs-backup copy ${ours[-1]} s, rclone copy ${ref[-1]} s" >&2
done
MO=$(printf '%s ' "${ours[@]}" | median); MR=$(printf '%s ' "${ref[@]}" | median)
MIBS() { awk "BEGIN {printf \"%.1f\", $BYTES / 1048576 / $1}"; }
RATIO=$(awk "BEGIN {printf \"%.2f\", $MR / $MO}")
MET=$(awk "BEGIN {print ($MR / $MO >= 0.9) ? 1 : 0}")
TABLE=$(cat <<EOF
| what | files | MiB | transfers | hs-backup copy (s, MiB/s) | rclone copy (s, MiB/s) | throughput ratio | target | met |
|---|---|---|---|---|---|---|---|---|
| copy to SFTP (loopback sshd) | $FILES | $((BYTES / 1048576)) | $TRANSFERS | $MO ($(MIBS "$MO")) | $MR ($(MIBS "$MR")) | ${RATIO}x | >= 0.9x | $([ "$MET" = 1 ] && echo yes || echo no) |

Rounds: $ROUNDS, interleaved; per round (ours / rclone): $(paste -d/ <(printf '%s\n' "${ours[@]}") <(printf '%s\n' "${ref[@]}") | tr '\n' ' ')
Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(rclone version | head -1), $(date -u +%Y-%m-%d).
EOF
)
echo "$TABLE"
if [ -n "$WRITE" ]; then
  python3 - "$WRITE" "$TABLE" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
start = "<!-- copy-bench:start -->"
end = "<!-- copy-bench:end -->"
block = start + "\n" + table + "\n" + end
if start in text:
    text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Copy (hs-backup copy to SFTP vs rclone copy)\n\n" + block + "\n"
open(path, "w").write(text)
PY
fi
