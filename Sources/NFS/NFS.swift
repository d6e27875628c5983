// NFS: the only importer of CNFS (libnfs). Placeholder until the NFS module lands.
