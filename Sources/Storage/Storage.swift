// Storage: Destination protocol with local-directory and nfs:// implementations.
// Placeholder until it lands.
