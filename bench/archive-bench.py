#!/usr/bin/env python3
"""Archive engine benchmark: writing and extracting a synthetic appdata tree.

Interleaved in one run (so machine noise hits every tool alike), median of --runs rounds:
  write:   archive-bench create (the engine, release build)  vs  tar -cf - | pigz -p2 -6  and  tar -czf
  extract: hs-restore --archive (the engine)                 vs  tar -xzf
Size is compared with gzip -6 (what tar -czf writes); peak RSS of the engine via /usr/bin/time -v.
Targets (issue 4): write <= 0.5x tar|pigz -p2, size <= 1.02x gzip -6, RSS <= 64 MiB,
extract <= 0.7x tar -xzf.

usage: bench/archive-bench.py [--scale 2] [--runs 3] [--work DIR] [--no-build]
"""
import argparse, os, shutil, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--scale", type=int, default=2)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--work", default="/tmp/hs-archive-bench")
ap.add_argument("--no-build", action="store_true")
a = ap.parse_args()

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
mkcorpus = next((p for p in [os.path.join(repo, "../shared/bench/mkcorpus.py"), "/work/shared/bench/mkcorpus.py"]
                 if os.path.exists(p)), None)
if mkcorpus is None:
    sys.exit("mkcorpus.py not found (expected ../shared/bench relative to the repo)")
if not a.no_build:
    subprocess.run(["swift", "build", "-c", "release", "--product", "archive-bench"], cwd=repo, check=True)
    subprocess.run(["swift", "build", "-c", "release", "--product", "hs-restore"], cwd=repo, check=True)
bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=repo, check=True,
                        capture_output=True, text=True).stdout.strip()
bench_bin, restore_bin = os.path.join(bindir, "archive-bench"), os.path.join(bindir, "hs-restore")

os.makedirs(a.work, exist_ok=True)
corpus = os.path.join(a.work, "corpus-%d" % a.scale)
if not os.path.isdir(corpus):
    subprocess.run([sys.executable, mkcorpus, corpus, "--scale", str(a.scale)], check=True)
W = lambda n: os.path.join(a.work, n)


def timed(cmd, shell=False):
    """Wall seconds and peak RSS (KiB) of cmd, via /usr/bin/time -v."""
    full = ["/usr/bin/time", "-v"] + (["sh", "-c", cmd] if shell else cmd)
    t0 = time.monotonic()
    p = subprocess.run(full, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (cmd, p.stderr[-2000:]))
    rss = next((int(l.split()[-1]) for l in p.stderr.splitlines() if "Maximum resident set size" in l), 0)
    return dt, rss


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)


res = {k: [] for k in ["ours_w", "ours_rss", "ours6_w", "pigz_w", "targz_w", "ours_x", "ours_x_rss", "tar_x"]}
subprocess.run(["sync"])
for r in range(a.runs):
    dt, rss = timed([bench_bin, "create", corpus, W("ours.tar.gz")]); res["ours_w"].append(dt); res["ours_rss"].append(rss)
    dt, _ = timed([bench_bin, "create", corpus, W("ours6.tar.gz"), "--level", "6"]); res["ours6_w"].append(dt)
    dt, _ = timed("tar -cf - -C '%s' . | pigz -p2 -6 > '%s'" % (corpus, W("pigz.tar.gz")), shell=True); res["pigz_w"].append(dt)
    dt, _ = timed(["tar", "-czf", W("gnu.tar.gz"), "-C", corpus, "."]); res["targz_w"].append(dt)
    # Extraction, measured the same way for both tools: the tool's previous tree is deleted,
    # the target created empty and dirty data flushed (sync) right before each timed run, and
    # the order alternates between rounds (ext4 skips recently freed inodes for a while, so
    # whoever runs right after a big delete pays more).
    def extract_ours():
        fresh(W("x-ours")); subprocess.run(["sync"])
        dt, rss = timed([restore_bin, "--archive", W("ours.tar.gz"), "--to", W("x-ours"), "--force"]); res["ours_x"].append(dt); res["ours_x_rss"].append(rss)
    def extract_tar():
        fresh(W("x-tar")); subprocess.run(["sync"])
        dt, _ = timed(["tar", "-xzf", W("gnu.tar.gz"), "-C", W("x-tar")]); res["tar_x"].append(dt)
    for f in ([extract_ours, extract_tar] if r % 2 == 0 else [extract_tar, extract_ours]):
        f()
    print("round %d (load %.2f): %s" % (r + 1, os.getloadavg()[0], ", ".join("%s=%.2f" % (k, v[-1]) for k, v in res.items() if not k.endswith("rss"))), flush=True)

# Extraction must reproduce the tree.
d = subprocess.run(["diff", "-r", corpus, W("x-ours")], capture_output=True, text=True)
if d.returncode != 0:
    sys.exit("extracted tree differs from the corpus:\n" + d.stdout[:2000])

med = {k: statistics.median(v) for k, v in res.items()}
size_ours, size_gz, size_pigz, size_ours6 = (os.path.getsize(W(n)) for n in ["ours.tar.gz", "gnu.tar.gz", "pigz.tar.gz", "ours6.tar.gz"])
nfiles = sum(len(f) for _, _, f in os.walk(corpus))
nbytes = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(corpus) for f in fs if not os.path.islink(os.path.join(p, f)))
print()
print("corpus: mkcorpus.py --scale %d: %d files, %.1f MB; %d cores; median of %d interleaved runs" %
      (a.scale, nfiles, nbytes / 1e6, os.cpu_count(), a.runs))
print()
print("| measure | engine | reference | ratio | target | ok |")
print("|---|---|---|---|---|---|")
rows = [
    ("write wall time", "%.2f s" % med["ours_w"], "tar -cf - \\| pigz -p2 -6: %.2f s" % med["pigz_w"], med["ours_w"] / med["pigz_w"], 0.5),
    ("write wall time", "%.2f s" % med["ours_w"], "tar -czf: %.2f s" % med["targz_w"], med["ours_w"] / med["targz_w"], None),
    ("archive size", "%.1f MB" % (size_ours / 1e6), "gzip -6 (tar -czf): %.1f MB" % (size_gz / 1e6), size_ours / size_gz, 1.02),
    ("write wall time, level 6", "%.2f s" % med["ours6_w"], "tar -cf - \\| pigz -p2 -6: %.2f s" % med["pigz_w"], med["ours6_w"] / med["pigz_w"], 0.5),
    ("archive size, level 6", "%.1f MB" % (size_ours6 / 1e6), "gzip -6 (tar -czf): %.1f MB" % (size_gz / 1e6), size_ours6 / size_gz, 1.02),
    ("write peak RSS", "%.1f MiB" % (med["ours_rss"] / 1024), "limit 64 MiB", med["ours_rss"] / 1024 / 64, 1.0),
    ("extract wall time", "%.2f s" % med["ours_x"], "tar -xzf: %.2f s" % med["tar_x"], med["ours_x"] / med["tar_x"], 0.7),
    ("extract peak RSS", "%.1f MiB" % (med["ours_x_rss"] / 1024), "", None, None),
]
for name, ours, ref, ratio, target in rows:
    print("| %s | %s | %s | %s | %s | %s |" % (name, ours, ref, "%.2fx" % ratio if ratio is not None else "",
                                              "<= %.2fx" % target if target else "", ("yes" if ratio <= target else "NO") if target else ""))
