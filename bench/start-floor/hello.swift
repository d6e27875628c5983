// The start-up floor of a Swift tool (bench/backup-bench.sh, sparse rows): a hello built with
// the tools' link mode (static Swift stdlib, PIE, lld, --no-export-dynamic), no Foundation.
print("hello")
