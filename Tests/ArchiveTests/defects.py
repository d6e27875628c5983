#!/usr/bin/env python3
"""Archives for the restore-engine defect tests (one per defect of issue #12).

usage: defects.py OUTDIR     writes OUTDIR/<name>.tar.gz
"""
import gzip, io, os, random, subprocess, sys, tarfile, tempfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def build(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def m(name, data=None, type_=tarfile.REGTYPE, link="", mode=0o644, **kw):
    i = tarfile.TarInfo(name)
    i.type, i.linkname, i.mode, i.mtime = type_, link, mode, 1_700_000_000
    for k, v in kw.items():
        setattr(i, k, v)
    return (i, data if type_ == tarfile.REGTYPE else None)


def save(name, raw):
    with open(os.path.join(out, name + ".tar.gz"), "wb") as fh:
        fh.write(gzip.compress(raw, mtime=0))


def pax_record(k, v):
    body = b" " + k + b"=" + v + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def hdr(name, size, typeflag=b"0"):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"14741774170\0"
    h[156:157] = typeflag
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def blk(data):
    return data + b"\0" * ((512 - len(data) % 512) % 512)


def pax_sparse(realsize, regions, data):
    """A GNU pax sparse 1.0 entry 'huge' (map in the data, then the data regions)."""
    rec = (pax_record(b"GNU.sparse.major", b"1") + pax_record(b"GNU.sparse.minor", b"0")
           + pax_record(b"GNU.sparse.name", b"huge") + pax_record(b"GNU.sparse.realsize", str(realsize).encode()))
    mp = (str(len(regions)) + "\n" + "".join("%d\n%d\n" % r for r in regions)).encode()
    body = blk(mp) + data
    return hdr(b"PaxHeaders/huge", len(rec), b"x") + blk(rec) + hdr(b"GNUSparseFile.0/huge", len(body)) + blk(body)


# A 195-byte (compressed) archive declaring an exabyte file: must neither run for years nor fill the disk.
save("sparse-exabyte", pax_sparse(1 << 60, [((1 << 60) - 1, 1)], b"Z") + b"\0" * 1024)
# A plausible big sparse file: 100 GiB with 2 small regions (restored with holes, quickly).
save("sparse-100g", pax_sparse(100 << 30, [(0, 5), ((100 << 30) - 3, 3)], b"headrend"[:5] + b"end") + b"\0" * 1024)
save("fifo", build([m("p", type_=tarfile.FIFOTYPE, mode=0o620), m("after.txt", b"after\n")]))
rnd = random.Random(7)
big = bytes(rnd.getrandbits(8) for _ in range(3 << 20))
raw = build([m("small.txt", b"small\n"), m("big.bin", big)])
save("big", raw)
gz = bytearray(gzip.compress(raw, mtime=0))
gz[-8] ^= 0xFF  # the member's CRC-32: only noticed after every byte was written
with open(os.path.join(out, "bad-crc.tar.gz"), "wb") as fh:
    fh.write(bytes(gz))
save("absolute-symlink", build([m("dangling", type_=tarfile.SYMTYPE, link="/nonexistent/target"), m("file.txt", b"kept\n")]))
save("device", build([m("a.txt", b"a\n"), m("dev/null", type_=tarfile.CHRTYPE, devmajor=1, devminor=3), m("z.txt", b"z\n")]))
save("hardlinks", build([m("c", b"shared\n"), m("a", type_=tarfile.LNKTYPE, link="c"), m("b", type_=tarfile.LNKTYPE, link="c")]))
save("self-hardlink", build([m("x", type_=tarfile.LNKTYPE, link="x"), m("y.txt", b"y\n")]))

# xattrs and a POSIX ACL as pax SCHILY.xattr.* records (binary values: hdrcharset=BINARY).
with tempfile.TemporaryDirectory() as d:
    probe = os.path.join(d, "probe")
    open(probe, "w").close()
    subprocess.run(["setfacl", "-m", "u:1234:r,g:5678:rw", probe], check=True)
    acl = os.getxattr(probe, "system.posix_acl_access")
i, data = m("acl.txt", b"acl\n", mode=0o640)
i.pax_headers = {"SCHILY.xattr.system.posix_acl_access": acl.decode("utf-8", "surrogateescape"),
                 "SCHILY.xattr.user.bin": b"\xff\x00\x01".decode("utf-8", "surrogateescape")}
save("xattrs-acl", build([(i, data)]))
