"""Where the catalog is kept: the Redis name set and the Chroma semantic index."""
