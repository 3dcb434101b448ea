"""Benchmarks: tidemesh side by side with its anchors. `make bench` runs them all."""
