// Compression module.
