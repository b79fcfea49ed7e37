"""Host memory housekeeping shared by the training loop and the benchmarks.

Its own module so a benchmark can use it without importing the loop (and, through it, the
evaluation code, about 50 MiB of resident memory).
"""

import ctypes
import ctypes.util


def release_freed_host_memory():
  """Returns heap memory that has been freed to the OS (glibc `malloc_trim`; elsewhere a no-op).

  XLA's compiler frees its working memory after a compile, but glibc keeps the pages in its
  arenas: the paper step's compile on the CPU leaves about 1.9 GiB of such pages in the
  process's RSS for the rest of the run (docs/benchmarks.md). Returns whether it ran.
  """
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    trim = libc.malloc_trim
  except (OSError, AttributeError):
    return False
  trim(0)
  return True
