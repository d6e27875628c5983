// Backup: placeholder until its issue lands.
