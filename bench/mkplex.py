#!/usr/bin/env python3
"""Plex-like tree of N small files for the backup and restore benchmarks.

    bench/mkplex.py N DIR [--seed S]

Plex's `Metadata/` and `Media/` folders are bundles: `<kind>/<h>/<40 hex>.bundle/Contents/...`
with about a hundred small files each (Info.xml per agent, posters, art, thumbnails, subtitles
index). This builds N files in ~N/100 bundles (each with a few subdirectories) below
`DIR/Library/Application Support/Plex Media Server/{Metadata,Media}`, plus a few top-level
files. Content is deterministic (seeded): ~85% small XML text (80 B - 1.2 KiB, compressible),
~15% thumbnail-like data (1 - 4 KiB, incompressible), mean ~0.9 KiB (~0.9 GB per million
files, as the metadata of a large library). mtimes are
spread over the last years (some before 2001), mode 0644.

Writes DIR/.mkplex-done with the counts when finished; refuses a non-empty DIR without it.
"""
import os
import random
import sys


def main() -> int:
    args = [a for a in sys.argv[1:]]
    seed = 13
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2 or not args[0].isdigit():
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    n, root = int(args[0]), args[1]
    done = os.path.join(root, ".mkplex-done")
    if os.path.exists(done):
        print(open(done).read().strip())
        return 0
    if os.path.isdir(root) and os.listdir(root):
        print(f"{root} is not empty and was not made by mkplex.py; give an empty or new directory", file=sys.stderr)
        return 2
    rnd = random.Random(seed)
    base = os.path.join(root, "Library", "Application Support", "Plex Media Server")
    os.makedirs(base, exist_ok=True)
    # Noise reused for incompressible files (slices of one random block: cheap to write).
    noise = rnd.randbytes(1 << 20)
    words = [b"<MediaContainer>", b"<Video ratingKey=", b"title=", b"summary=", b"guid=\"plex://movie/",
             b"year=", b"<Genre tag=\"Drama\"/>", b"<Role tag=", b"</MediaContainer>", b"\"thumb\": \"", b"\n  "]
    files = dirs = 0
    total = 0
    t0 = 1_600_000_000

    def put(path: str, data: bytes, mtime: int) -> None:
        nonlocal files, total
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
        os.utime(path, ns=(mtime * 1_000_000_000 + 123, mtime * 1_000_000_000 + rnd.randrange(1_000_000_000)))
        files += 1
        total += len(data)

    def text(k: int) -> bytes:
        out = bytearray()
        while len(out) < k:
            out += words[rnd.randrange(len(words))] + str(rnd.randrange(100000)).encode()
        return bytes(out[:k])

    def blob(k: int) -> bytes:
        o = rnd.randrange(len(noise) - k)
        return noise[o:o + k]

    for name, k in [("Preferences.xml", 2400), ("Plug-in Support/Databases/README", 300)]:
        p = os.path.join(base, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        put(p, text(k), t0)
    bundle = 0
    sections = ["Metadata/Movies", "Metadata/TV Shows", "Metadata/Artists", "Media/localhost"]
    subdirs = ["Contents/_combined", "Contents/com.plexapp.agents.imdb", "Contents/tv.plex.agents.movie/posters",
               "Contents/_stored/art"]
    while files < n:
        h = rnd.getrandbits(160)
        sec = sections[bundle % len(sections)]
        bdir = os.path.join(base, sec, "%x" % (h >> 156), "%040x.bundle" % h)
        mtime = t0 - rnd.randrange(8 * 365 * 86400) if bundle % 50 else 900_000_000 + bundle
        want = min(n - files, 80 + rnd.randrange(41))  # ~100 files per bundle
        per = [want // len(subdirs)] * len(subdirs)
        per[0] += want - sum(per)
        for sd, count in zip(subdirs, per):
            d = os.path.join(bdir, sd)
            os.makedirs(d, exist_ok=True)
            dirs += 1
            for i in range(count):
                if rnd.random() < 0.85:
                    put(os.path.join(d, "Info%03d.xml" % i), text(80 + rnd.randrange(1120)), mtime)
                else:
                    put(os.path.join(d, "%040x" % rnd.getrandbits(160)), blob(1024 + rnd.randrange(3 * 1024)), mtime)
        bundle += 1
    summary = f"{files} files, {bundle} bundles, {dirs} leaf directories, {total / 1e6:.0f} MB of content in {root}"
    with open(done, "w") as f:
        f.write(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
