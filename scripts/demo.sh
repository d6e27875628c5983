#!/usr/bin/env bash
# The main job on a local directory, end to end:
#   install the build dependencies if missing (as root), build the toolkit (release), generate small sample appdata,
#   back it up, change files, back up again (incremental), list, verify, restore into a new
#   directory and show that it matches the source exactly; restore the first backup too.
# Everything happens under ./demo/ (removed and recreated on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
# HS_BIN: use already-built tools (the test suite runs the demo with its debug build);
# HS_DEMO_DIR: where to work (default ./demo).
if [ -n "${HS_BIN:-}" ]; then
  BIN=$HS_BIN
else
  # As root: install the build dependencies only (no test services, no Docker).
  if [ "$(id -u)" -eq 0 ]; then scripts/bootstrap.sh --build-only; fi
  # Progress lines are dropped; pipefail keeps a failed build fatal.
  for product in hs-backup hs-restore; do
    swift build -c release --product "$product" 2>&1 | sed -E '/^\[[0-9]+\/[0-9]+\] /d'
  done
  BIN=$(swift build -c release --show-bin-path)
fi
D=${HS_DEMO_DIR:-$PWD/demo}
rm -rf "$D"; mkdir -p "$D"
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "generate sample appdata in demo/appdata (small mkcorpus-like tree)"
python3 - "$D/appdata" <<'EOF'
import os, random, sqlite3, sys
root = sys.argv[1]; rng = random.Random(7)
def put(rel, data, mode=0o644):
    p = os.path.join(root, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f: f.write(data)
    os.chmod(p, mode)
words = b"INFO import movie episode scan completed grab indexer quality 1080p hardlink".split()
for app in ["plex", "radarr", "sonarr", "prowlarr", "homepage", "uptime-kuma"]:
    put(app + "/config.xml", b"<Config><ApiKey>%032x</ApiKey></Config>\n" % rng.getrandbits(128), 0o600)
    put(app + "/logs/%s.txt" % app, b"\n".join(b" ".join(rng.choice(words) for _ in range(10)) for _ in range(3000)))
    for i in range(40):
        d = "%s/MediaCover/%d" % (app, i) if app != "plex" else "plex/Metadata/%02x/%08x.bundle" % (i, rng.getrandbits(32))
        put(d + "/poster.jpg", rng.randbytes(rng.randint(5000, 40000)))
    db = sqlite3.connect(os.path.join(root, app, app + ".db"))
    db.execute("create table t(id integer primary key, v text)")
    db.executemany("insert into t(v) values (?)", [("row %d %s" % (i, "x" * 50),) for i in range(2000)])
    db.commit(); db.close()
put("plex/Library/Application Support/Plex Media Server/Cache/transcode.tmp", rng.randbytes(100000))
os.symlink("config.xml", os.path.join(root, "radarr", "config.link"))
os.link(os.path.join(root, "sonarr/config.xml"), os.path.join(root, "sonarr/config.hardlink"))
EOF
du -sh "$D/appdata"; echo "$(find "$D/appdata" -type f | wc -l) files"

step "first backup (full) to demo/backups"
show "$BIN/hs-backup" --source "$D/appdata" --to "$D/backups" --name demo
FIRST=$("$BIN/hs-backup" list --to "$D/backups" --name demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["id"])')
cp -a "$D/appdata" "$D/appdata-at-first"
sleep 1   # ids are per second

step "change files: modify, add, delete, rename"
echo "2026-11-27 INFO radarr grabbed a new release" >> "$D/appdata/radarr/logs/radarr.txt"
echo "new: true" > "$D/appdata/homepage/services.yaml"
rm "$D/appdata/prowlarr/config.xml"
mv "$D/appdata/sonarr/MediaCover/3" "$D/appdata/sonarr/MediaCover/3-renamed"

step "second backup (incremental: only what changed goes into the new archive)"
show "$BIN/hs-backup" --source "$D/appdata" --to "$D/backups" --name demo

step "list and verify"
show "$BIN/hs-backup" list --to "$D/backups" --name demo
show "$BIN/hs-backup" verify --to "$D/backups" --name demo
ls -l "$D/backups/demo"

step "restore the latest backup into demo/restored"
show "$BIN/hs-restore" --from "$D/backups" --name demo --to "$D/restored"
step "restore the first backup into demo/restored-first"
show "$BIN/hs-restore" --from "$D/backups" --name demo --backup "$FIRST" --to "$D/restored-first"

step "compare (type, mode, owner, mtime ns, content, link targets, hardlinks; Plex Cache is excluded by default)"
# Live SQLite databases are captured through SQLite's backup API (never copied as raw bytes,
# which can tear), so a restored database is compared by its content: integrity_check plus
# a full SQL dump. Every other file is compared byte for byte (SHA-256).
python3 - "$D" <<'EOF'
import hashlib, os, sqlite3, stat, sys
D = sys.argv[1]
def content(path):
    with open(path, "rb") as f: head = f.read(16)
    if head != b"SQLite format 3\0":
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        return "sqlite:%s:%s" % (check, hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest())
    finally:
        db.close()
def describe(root, skip=()):
    out, inodes = {}, {}
    for dp, dns, fns in os.walk(root):
        rel = os.path.relpath(dp, root)
        dns[:] = [d for d in dns if os.path.normpath(os.path.join(rel, d)) not in skip]
        for n in dns + fns:
            p = os.path.join(dp, n); r = os.path.normpath(os.path.join(rel, n)); st = os.lstat(p)
            d = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode): d += (os.readlink(p),)
            else: d += (st.st_mtime_ns,)
            if stat.S_ISREG(st.st_mode):
                d += (content(p),)
                if st.st_nlink > 1: d += (inodes.setdefault(st.st_ino, r),)
            out[r] = d
    return out
cache = "plex/Library/Application Support/Plex Media Server/Cache"
ok = True
for src, dst in [("appdata", "restored"), ("appdata-at-first", "restored-first")]:
    a, b = describe(os.path.join(D, src), {cache}), describe(os.path.join(D, dst))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    print("%-17s vs %-15s: %d entries, %s" % (src, dst, len(a), "IDENTICAL" if not diff else "DIFFERENT: %s" % diff[:5]))
    ok = ok and not diff
first = describe(os.path.join(D, "restored-first"))
print("first backup has prowlarr/config.xml: %s; has homepage/services.yaml: %s" % ("prowlarr/config.xml" in first, "homepage/services.yaml" in first))
sys.exit(0 if ok else 1)
EOF
echo
echo "demo done: sources, backups and restores are under ./demo/"
