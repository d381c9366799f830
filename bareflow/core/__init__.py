"""Plugin machinery and the facts every step shares: the manager, build variables, checksums, paths."""
