"""A synthetic atlas in the real schema, for benchmarks and browser tests (see atlas.generate)."""
