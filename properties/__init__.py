"""Property-based tests of fastconv's kernels (Hypothesis), and the strategies they draw from."""
