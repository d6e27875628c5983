#!/usr/bin/env python3
"""Generate a corpus of hostile tar.gz archives for the archive engine's tests.

usage: hostile.py OUTDIR OUTSIDE_DIR
Writes OUTDIR/<case>.tar.gz (or .bin) and OUTDIR/cases.json: {case: [expected words in the
error, ...]}. OUTSIDE_DIR is a directory next to the extraction target that must never change
(absolute-path cases name it directly). Two-archive cases are <case>.1.tar.gz + <case>.2.tar.gz:
the first must extract, the second must be refused.
"""
import gzip, io, json, os, sys, tarfile, zlib

out, outside = sys.argv[1], os.path.abspath(sys.argv[2])
rel_outside = "../" + os.path.basename(outside)
cases = {}
accepted = {}  # restored (exit 0) with these words in a warning; nothing outside changes


def build(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m in members:
            info, data = m
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def f(name, data=b"pwned\n", **kw):
    i = tarfile.TarInfo(name)
    i.mode = 0o644
    for k, v in kw.items():
        setattr(i, k, v)
    return (i, data)


def entry(name, type_, linkname="", **kw):
    i = tarfile.TarInfo(name)
    i.type = type_
    i.linkname = linkname
    i.mode = kw.pop("mode", 0o755)
    for k, v in kw.items():
        setattr(i, k, v)
    return (i, None)


def save(name, raw, words, compress=True, ok=False):
    path = os.path.join(out, name + (".tar.gz" if compress else ".bin"))
    with open(path, "wb") as fh:
        fh.write(gzip.compress(raw, mtime=0) if compress else raw)
    (accepted if ok else cases)[os.path.basename(path)] = words


def ustar_header(name, size, typeflag=b"0", chksum_delta=0):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1700000000
    h[156:157] = typeflag
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    s = sum(h) + chksum_delta
    h[148:156] = b"%06o\0 " % s
    return bytes(h)


os.makedirs(out, exist_ok=True)

# Paths
save("traversal", build([f("ok.txt"), f(rel_outside + "/victim")]), ["parent-traversal"])
save("traversal-nested", build([entry("a", tarfile.DIRTYPE), f("a/../../" + os.path.basename(outside) + "/victim")]), ["parent-traversal"])
# GNU tar, bsdtar and Python's data filter strip the leading "/": restored inside the target.
save("absolute-path", build([f(outside + "/victim")]), ["leading '/'"], ok=True)
save("absolute-gnu-longname", build([f(outside + "/" + "x" * 120 + "/../victim")], tarfile.GNU_FORMAT), ["parent-traversal"])

# Symlinks are data: created as recorded (with a warning when they point outside), never
# followed; writing through one is refused.
save("symlink-escape-relative", build([entry("link", tarfile.SYMTYPE, rel_outside), f("link/victim")]), ["symlink-in-path"])
save("symlink-escape-absolute", build([entry("link", tarfile.SYMTYPE, outside), f("link/victim")]), ["symlink-in-path"])
save("symlink-escape-deep", build([entry("a", tarfile.DIRTYPE), entry("a/b", tarfile.DIRTYPE),
                                   entry("a/b/l", tarfile.SYMTYPE, "../../" + rel_outside)]), ["a/b/l", "outside"], ok=True)
# Chain: l2 -> l1/.. and l1 -> ..; l3 through l2 leads outside once followed (never, here).
save("symlink-chain-escape", build([entry("d", tarfile.DIRTYPE), entry("d/l2", tarfile.SYMTYPE, "l1/.."),
                                    entry("d/l1", tarfile.SYMTYPE, ".."), entry("d/l3", tarfile.SYMTYPE, "l2/" + rel_outside[3:]),
                                    f("d/l3/victim")]),
     ["symlink-in-path", "d/l3"])
# Write through a symlink created by the same archive (pointing inside) is refused too.
save("symlink-write-through", build([entry("real", tarfile.DIRTYPE), entry("lnk", tarfile.SYMTYPE, "real"), f("lnk/file")]),
     ["symlink-in-path"])
# Across two archives (a full then an incremental): the first plants an inside symlink to a dir,
# the second writes through it.
save("two-archives.1", build([entry("data", tarfile.DIRTYPE), entry("cfg", tarfile.SYMTYPE, "data")]), [])
save("two-archives.2", build([f("cfg/settings.xml")]), ["symlink-in-path"])

# Hardlinks
save("hardlink-escape-relative", build([entry("h", tarfile.LNKTYPE, rel_outside + "/victim"), f("h")]), ["hardlink-escape"])
# An absolute hardlink target is stripped like a name: it names a file inside the target.
save("hardlink-escape-absolute", build([entry("h", tarfile.LNKTYPE, outside + "/victim")]), ["hardlink target"])
save("hardlink-to-missing", build([entry("h", tarfile.LNKTYPE, "not-there")]), ["hardlink target"])

# Devices
save("device-char", build([entry("null", tarfile.CHRTYPE, devmajor=1, devminor=3)]), ["null", "device node"], ok=True)
save("device-block", build([entry("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)]), ["sda", "device node"], ok=True)

# Malformed headers and pax records
huge_pax = ustar_header(b"PaxHeaders/x", 0o17777777777, b"x")  # 2 GiB pax header, no data
save("pax-huge", huge_pax + b"\0" * 1024, ["exceeds"])
bad_rec = b"99 path=foo\n"
save("pax-bad-length", ustar_header(b"PaxHeaders/x", len(bad_rec), b"x") + bad_rec.ljust(512, b"\0") +
     ustar_header(b"foo", 0) + b"\0" * 1024, ["malformed pax record"])
no_eq = b"12 pathfoo\n\0"
save("pax-no-equals", ustar_header(b"PaxHeaders/x", 11, b"x") + no_eq.ljust(512, b"\0") +
     ustar_header(b"foo", 0) + b"\0" * 1024, ["pax record"])
save("pax-bad-size-value", ustar_header(b"PaxHeaders/x", 12, b"x") + b"12 size=-12\n\0".ljust(512, b"\0") +
     ustar_header(b"foo", 0) + b"\0" * 1024, ["not a number"])
save("gnu-longname-huge", ustar_header(b"././@LongLink", 0o777777777, b"L") + b"\0" * 1024, ["exceeds"])
save("bad-checksum", ustar_header(b"file", 5, chksum_delta=7) + b"hello".ljust(512, b"\0") + b"\0" * 1024, ["checksum"])
bad = bytearray(ustar_header(b"file", 5))
bad[124:136] = b"0000000009x\0"
bad[148:156] = b" " * 8
bad[148:156] = b"%06o\0 " % sum(bad)
save("bad-octal", bytes(bad) + b"hello".ljust(512, b"\0") + b"\0" * 1024, ["octal"])

# Truncation and corruption
good = build([f("a.txt", os.urandom(100000)), f("b.txt", b"b" * 50000)])
gz = gzip.compress(good, mtime=0)
save("truncated-gzip", gz[: len(gz) // 2], ["truncated"], compress=False)
flipped = bytearray(gz)
flipped[len(gz) // 2] ^= 0x40
save("bitflip-gzip", bytes(flipped), ["gzip"], compress=False)
save("truncated-tar-inside-content", good[:5000], ["truncated"])
save("no-end-marker", build([f("a.txt", b"x" * 600)])[:1536], ["truncated"])
save("not-gzip", b"this is not an archive at all\n" * 40, ["checksum"], compress=False)
save("empty", b"", ["empty"], compress=False)

with open(os.path.join(out, "cases.json"), "w") as fh:
    json.dump(cases, fh, indent=1, sort_keys=True)
with open(os.path.join(out, "accepted.json"), "w") as fh:
    json.dump(accepted, fh, indent=1, sort_keys=True)
print(len(cases))
