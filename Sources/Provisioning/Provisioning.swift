// Provisioning: placeholder until its issue lands.
