"""pytest plugin of fastconv.testing (fixtures for kernel tests); filled in by the verification framework."""
