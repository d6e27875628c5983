# Sourced by the bench scripts (after `cd` to the repository): release builds linked the way
# scripts/package.sh ships the tools (static Swift stdlib; no $ORIGIN RUNPATH, which costs ~24
# failed openat/stat per start), so a bench measures what users run. One link mode for every
# bench also keeps them from relinking each other's binaries: a dynamic and a static release
# build share .build/release, and each switch relinks (the restore bench used to leave a dynamic
# hs-backup behind for the sparse row).
# Every bench sets these already; here too, so that bench_build's pipe cannot hide a failed build.
set -euo pipefail
BENCH_BUILD=(swift build -c release --static-swift-stdlib --disable-local-rpath)
# bench_build PRODUCT...: builds each product (progress lines dropped, errors kept; pipefail
# stops the calling script on a failed build) and sets BIN to the directory holding them.
bench_build() {
  local p
  for p in "$@"; do "${BENCH_BUILD[@]}" --product "$p" 2>&1 | sed -E '/^\[[0-9]+\/[0-9]+\] /d' >&2; done
  BIN=$("${BENCH_BUILD[@]}" --show-bin-path)
}
