/* Measurement only (bench/backup-bench.sh, sparse rows): LD_PRELOAD this to make fsync and
 * fdatasync no-ops, so a run's time without them shows what making a backup durable costs.
 * Never used outside the bench: a backup run with it is not crash-safe. */
int fsync(int fd) { (void)fd; return 0; }
int fdatasync(int fd) { (void)fd; return 0; }
