#!/usr/bin/env python3
"""Archives from the wild for the restore engine's tests, and a tree comparer.

usage:
  wild.py make OUTDIR        writes OUTDIR/<case>.tar(.gz) and OUTDIR/cases.json
                             ({case: "what wrote it"}); needs root (device nodes, owners).
  wild.py compare REF GOT    compares two extracted trees as bytes: type, mode, owner, ns mtime,
                             content, symlink target, hardlink groups, xattrs, allocated size
                             (within 1 MiB); device nodes in REF are ignored. Exit 1 and one
                             line per difference when they differ.

Every archive is written by a real tool (GNU tar in each format and sparse version, bsdtar,
Python tarfile) or, for the header quirks GNU tar accepts, by hand; the reference is what
GNU tar extracts from it.
"""
import gzip, hashlib, io, json, os, stat, subprocess, sys, tarfile

NS = 1_000_000_000


def sh(*args, **kw):
    subprocess.run(list(args), check=True, **kw)


def put(path, data, mode=0o644, mtime=(1_700_000_000, 123_456_789), uid=0, gid=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime[0] * NS + mtime[1],) * 2)


def sparse(path, size, chunks):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
        for off, data in chunks:
            fh.seek(off)
            fh.write(data)
    os.utime(path, ns=(1_600_000_000 * NS,) * 2)


def tree(root, kind):
    """kind: 'full' (everything GNU pax can carry) or 'basic' (what ustar/v7 can carry)."""
    b = os.fsencode(root)
    put(root + "/plain.txt", b"hello\n" * 100, 0o640, uid=1234, gid=5678)
    put(root + "/dir/exec.sh", b"#!/bin/sh\n", 0o755)
    # Names that are not UTF-8: latin-1, koi8-r, cp866, EUC-JP. Two of them differ only in
    # bytes that a lossy UTF-8 decoding turns into the same U+FFFD.
    for raw in ["caf\u00e9.txt".encode("latin-1"), "na\u00efve".encode("latin-1"),
                "\u043f\u0440\u0438\u0432\u0435\u0442".encode("koi8-r"), "\u0444\u0430\u0439\u043b".encode("cp866"),
                "\u65e5\u672c".encode("euc-jp")]:
        put(os.fsdecode(b + b"/names/" + raw), raw + b"\n")
    os.makedirs(root + "/empty", exist_ok=True)
    os.chmod(root + "/empty", 0o750)
    os.link(root + "/plain.txt", root + "/dir/hard.txt")
    os.symlink("../plain.txt", root + "/dir/rel.link")
    os.symlink("/nonexistent/target", root + "/dir/abs.link")
    sparse(root + "/holes.img", 64 << 20, [(1 << 20, b"A" * 4096), (40 << 20, b"B" * 10000)])
    sparse(root + "/tail-hole.img", 8 << 20, [(0, b"C" * 512)])
    if kind == "full":
        put(root + "/old.txt", b"before 1970\n", mtime=(-1, 500_000_000))
        put(root + "/older.txt", b"1901\n", mtime=(-2_177_452_800, 250_000_000))
        put(root + "/future.txt", b"after 2262\n", mtime=(9_300_000_000, 1))
        put(root + "/" + "long-" * 30 + "/name-" * 25, b"long\n")
        os.mkfifo(root + "/fifo", 0o620)
        os.mknod(root + "/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.setxattr(root + "/plain.txt", "user.note", b"\xffbinary\x00value", follow_symlinks=False)
    # Directory times last.
    for d, _, _ in sorted(os.walk(root), reverse=True):
        os.utime(d, ns=(1_650_000_000 * NS + 7,) * 2)


def make(out):
    os.makedirs(out, exist_ok=True)
    cases = {}
    for kind in ("full", "basic"):
        src = os.path.join(out, "src-" + kind)
        tree(src, kind)
    full, basic = os.path.join(out, "src-full"), os.path.join(out, "src-basic")

    def gnutar(name, src, *opts):
        path = os.path.join(out, name + ".tar.gz")
        sh("tar", *opts, "-czf", path, "-C", src, ".")
        cases[os.path.basename(path)] = "GNU tar " + " ".join(opts)

    gnutar("gnu-default-S", full, "-S")                       # GNU format, type 'S' sparse
    gnutar("gnu-gnu", full, "--format=gnu")
    gnutar("gnu-oldgnu-S", full, "--format=oldgnu", "-S")
    gnutar("gnu-pax", full, "--format=pax", "--xattrs")
    gnutar("gnu-pax-sparse-0.0", full, "--format=pax", "--sparse", "--sparse-version=0.0")
    gnutar("gnu-pax-sparse-0.1", full, "--format=pax", "--sparse", "--sparse-version=0.1")
    gnutar("gnu-pax-sparse-1.0", full, "--format=pax", "--sparse", "--sparse-version=1.0")
    gnutar("gnu-ustar", basic, "--format=ustar")
    gnutar("gnu-v7", basic, "--format=v7")
    # -P: absolute member names (GNU tar strips the leading "/" when extracting).
    path = os.path.join(out, "gnu-absolute-P.tar.gz")
    sh("tar", "-czPf", path, os.path.abspath(basic) + "/names", os.path.abspath(basic) + "/dir")
    cases[os.path.basename(path)] = "GNU tar -P"
    path = os.path.join(out, "bsdtar.tar.gz")
    sh("bsdtar", "-czf", path, "-C", full, ".")
    cases[os.path.basename(path)] = "bsdtar"
    for fmt, name in ((tarfile.PAX_FORMAT, "python-pax"), (tarfile.GNU_FORMAT, "python-gnu")):
        path = os.path.join(out, name + ".tar.gz")
        with tarfile.open(path, "w:gz", format=fmt) as t:
            for n in sorted(os.listdir(full)):
                if n != "null":
                    t.add(os.path.join(full, n), arcname=n)
        cases[os.path.basename(path)] = "Python tarfile"

    # One tar stream in gzip members of very different sizes, as pigz or a concatenation
    # make: small ones (decoded whole), an empty one, one of 40 MiB (more than is decoded
    # whole: the streaming decoder takes over from there), then small ones again.
    raw = os.path.join(out, "mixed.tar")
    sh("tar", "--format=pax", "-cf", raw, "-C", full, ".")
    data = open(raw, "rb").read()
    os.unlink(raw)
    cuts = [0, 1 << 16, 2 << 16, 2 << 16, 3 << 16, (3 << 16) + (40 << 20)]
    cuts += list(range(cuts[-1] + (1 << 20), len(data), 1 << 20)) + [len(data)]
    path = os.path.join(out, "mixed-members.tar.gz")
    with open(path, "wb") as fh:
        for a, b in zip(cuts, cuts[1:]):
            fh.write(gzip.compress(data[a:b], mtime=0))
    cases[os.path.basename(path)] = "gzip members of 64 KiB, 0 B, 40 MiB, 1 MiB"

    # Header quirks GNU tar extracts (hand-made raw bytes).
    def save(name, raw):
        path = os.path.join(out, name + ".tar")
        with open(path, "wb") as fh:
            fh.write(raw)
        cases[os.path.basename(path)] = "hand-made quirk"

    end = b"\0" * 1024
    save("quirk-hardlink-nonzero-size", hdr(b"a", 3) + blk(b"abc") + hdr(b"b", 3, b"1", link=b"a") + hdr(b"c", 2) + blk(b"xy") + end)
    acl = b"2\0user::rw-,group::r--,other::r--\0"
    save("quirk-solaris-acl", hdr(b"f", len(acl), b"A") + blk(acl) + hdr(b"f", 3) + blk(b"abc") + end)
    big = b"x" * (3 << 20)
    rec = pax_record(b"SCHILY.xattr.user.big", big) + pax_record(b"path", b"withbigpax")
    save("quirk-pax-over-1mib", hdr(b"PaxHeaders/withbigpax", len(rec), b"x") + blk(rec) + hdr(b"withbigpax", 3) + blk(b"abc") + end)
    save("quirk-numeric-leading-nul", hdr(b"n", 3, mode=b"\x00000644\x00") + blk(b"abc") + end)
    save("quirk-numeric-trailing-garbage", hdr(b"t", 3, mtime=b"1474177417 z", uid=b"001750 x") + blk(b"abc") + end)
    v7dir = bytearray(hdr(b"v/", 512))
    v7dir[257:265] = b"\0" * 8
    v7dir[148:156] = b" " * 8
    v7dir[148:156] = b"%06o\0 " % sum(v7dir)
    save("quirk-oldstyle-dir-nonzero-size", bytes(v7dir) + hdr(b"v/f", 3) + blk(b"abc") + hdr(b"g", 2) + blk(b"xy") + end)
    save("quirk-empty-name", hdr(b"", 0, b"5") + hdr(b"e", 3) + blk(b"abc") + end)
    # Odd archives GNU tar extracts with a warning or silently (issue 24); each also has an
    # entry in odd.json: a word the restore's warning must hold.
    odd = {}
    rec = pax_record(b"mtime", b"1700000000.5xyz")
    save("odd-pax-mtime-trailing-garbage", hdr(b"PaxHeaders/m", len(rec), b"x") + blk(rec) + hdr(b"m", 3) + blk(b"abc") + end)
    odd["odd-pax-mtime-trailing-garbage.tar"] = "trailing bytes"
    sparse10 = pax_record(b"GNU.sparse.major", b"1") + pax_record(b"GNU.sparse.minor", b"0")
    m = blk(b"1\n0\n3\n")
    rec = sparse10 + pax_record(b"GNU.sparse.size", b"4096")
    save("odd-sparse-1.0-without-name-realsize", hdr(b"PaxHeaders/s", len(rec), b"x") + blk(rec) + hdr(b"s", len(m) + 3) + m + blk(b"abc") + end)
    odd["odd-sparse-1.0-without-name-realsize.tar"] = "GNU.sparse.realsize"
    m = blk(b"1\n4096\n1000\n")
    for name, n, fill in ((b"short", 996, b"y"), (b"long", 1004, b"z")):
        rec = sparse10 + pax_record(b"GNU.sparse.name", name) + pax_record(b"GNU.sparse.realsize", b"5096")
        save("odd-sparse-map-data-" + name.decode(), hdr(b"PaxHeaders/x", len(rec), b"x") + blk(rec)
             + hdr(b"GNUSparseFile.0/" + name, len(m) + n) + m + blk(fill * n) + end)
        odd["odd-sparse-map-data-" + name.decode() + ".tar"] = "sparse map holds"
    save("odd-no-end-blocks-after-hardlink", hdr(b"a", 3) + blk(b"abc") + hdr(b"b", 0, b"1", link=b"a"))
    odd["odd-no-end-blocks-after-hardlink.tar"] = "end-of-archive blocks"
    with open(os.path.join(out, "odd.json"), "w") as fh:
        json.dump(odd, fh, indent=1, sort_keys=True)
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump(cases, fh, indent=1, sort_keys=True)


def blk(data):
    return data + b"\0" * ((512 - len(data) % 512) % 512)


def pax_record(k, v):
    body = b" " + k + b"=" + v + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def hdr(name, size, typeflag=b"0", link=b"", mode=b"0000644\0", mtime=b"14741774170\0", uid=b"0000000\0"):
    assert len(mode) == 8 and len(uid) == 8 and len(mtime) == 12
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = mode
    h[108:116] = uid
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = mtime
    h[156:157] = typeflag
    h[157:157 + len(link)] = link
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def describe(root):
    out, inodes = {}, {}
    rb = os.fsencode(root)
    for d, dirs, files in os.walk(rb):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, rb)
            st = os.lstat(p)
            t = stat.S_IFMT(st.st_mode)
            if t in (stat.S_IFCHR, stat.S_IFBLK):
                out[rel] = None
                continue
            desc = {"type": t, "mode": oct(stat.S_IMODE(st.st_mode)), "owner": (st.st_uid, st.st_gid)}
            if t != stat.S_IFLNK:
                desc["mtime"] = st.st_mtime_ns
                try:
                    desc["xattrs"] = sorted((k, os.getxattr(p, k, follow_symlinks=False)) for k in os.listxattr(p, follow_symlinks=False))
                except OSError:
                    pass
            if t == stat.S_IFLNK:
                desc["target"] = os.readlink(p)
            elif t == stat.S_IFREG:
                with open(p, "rb") as fh:
                    desc["sha"] = hashlib.sha256(fh.read()).hexdigest()
                desc["size"] = st.st_size
                desc["allocated"] = st.st_blocks * 512
                if st.st_nlink > 1:
                    desc["link-group"] = inodes.setdefault(st.st_ino, rel)
            out[rel] = desc
    return out


def compare(ref, got):
    """Differences that matter. Allowed: the restore allocates less than GNU tar (it makes
    holes of zero runs that GNU tar writes out); directory mtimes GNU tar left at "now"
    (directories not in the archive, or touched again by a later entry, e.g. bsdtar's
    hardlinks after its directory entries) are not compared."""
    import time
    recent = (time.time() - 3600) * NS
    a, b = describe(ref), describe(got)
    diffs = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if k in a and x is None:
            continue  # a device node: never extracted
        if x is not None and y is not None and x.get("type") == stat.S_IFDIR and x.get("mtime", 0) > recent:
            y = dict(y, mtime=x["mtime"])
        if x is not None and y is not None and "allocated" in x and "allocated" in y:
            if y["allocated"] <= x["allocated"] + (1 << 20):
                y = dict(y, allocated=x["allocated"])
            if "link-group" in x and "link-group" in y:
                # group names are whichever path was walked first: compare membership
                y = dict(y, **{"link-group": x["link-group"]}) if a.get(y["link-group"]) and b.get(x["link-group"]) else y
        if x != y:
            diffs.append("%r: GNU tar %s, restore %s" % (k, x, y))
    return diffs


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "compare":
        d = compare(sys.argv[2], sys.argv[3])
        for line in d[:40]:
            print(line)
        sys.exit(1 if d else 0)
    else:
        sys.exit(__doc__)
