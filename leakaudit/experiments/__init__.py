"""Applications built on the audit: the demo, the power sweep and the benchmarks."""
