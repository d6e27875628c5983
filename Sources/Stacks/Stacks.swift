// Stacks: placeholder until its issue lands.
