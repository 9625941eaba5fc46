"""Benchmarks that time hpcq side by side with a peer in one run."""
