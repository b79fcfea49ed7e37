"""Timing of jitted functions shared by the benchmark scripts."""

import statistics
import time

import jax


def call_ms(fn, *args, repeats, reduce=statistics.median):
  """`reduce` over `repeats` timed calls of fn(*args) after one untimed call (the compile), in ms."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - started)
  return 1e3 * reduce(times)
