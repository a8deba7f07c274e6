"""Benchmarks of the runtime (not part of the pytest suite): ``python -m bench.<name> --help``."""
