// LinkCheck: placeholder until its issue lands.
