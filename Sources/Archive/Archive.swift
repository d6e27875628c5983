// Archive: streaming POSIX pax tar writer and reader, parallel gzip members, safe extraction.
// Placeholder until the archive engine lands.
