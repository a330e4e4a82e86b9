"""Device-facing drivers: bytes in, Events out."""
