"""Fakes for tests and benchmarks (never shipped): a fake CARLA server and a pool of them."""
