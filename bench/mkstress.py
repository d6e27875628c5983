#!/usr/bin/env python3
"""Stress tree for restore benchmarks: N tiny files (about 30 bytes each), 100 per directory.

Usage: mkstress.py N OUT_DIR
"""
import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkstress.py N OUT_DIR")
    n, out = int(sys.argv[1]), sys.argv[2]
    for i in range(n):
        d = os.path.join(out, "d%04d" % (i // 10000), "d%06d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%07d.txt" % i), "w") as fh:
            fh.write("tiny file number %07d here\n" % i)
    open(os.path.join(out, ".mkstress-done"), "w").close()


if __name__ == "__main__":
    main()
