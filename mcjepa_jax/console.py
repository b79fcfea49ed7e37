"""What the command lines print: progress and tables by default, library logs on request.

Orbax, absl, clu and TensorFlow log at INFO level (hundreds of lines per
run). Every entry point calls `quiet_logging()` first: only warnings and
errors of libraries are shown unless `--verbosity=1` (absl's flag) is given
or MCJEPA_VERBOSE=1 is set.
"""

import os
import sys
import time


def verbose_requested():
  """True when the user asked for library logs (MCJEPA_VERBOSE=1 or an explicit --verbosity/-v)."""
  if os.environ.get("MCJEPA_VERBOSE", "") not in ("", "0"):
    return True
  from absl import flags  # pylint: disable=g-import-not-at-top
  return "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present


def quiet_environment():
  """TensorFlow's C++ INFO logs off unless MCJEPA_VERBOSE=1: call before anything imports TensorFlow
  (it reads the variable once, at import; config files may import it during flag parsing)."""
  if os.environ.get("MCJEPA_VERBOSE", "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow announces its oneDNN kernels before its log level applies; only TensorFlow's own
    # ops (image decoding in TFDS, summaries) are affected, never the JAX model.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def quiet_logging():
  """Library logs down to warnings unless `verbose_requested()`; call after flags are parsed."""
  if verbose_requested():
    return
  quiet_environment()
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger().setLevel(logging.WARNING)


class Progress:
  """Prints `label i/n  rate  ETA` lines at most every `every_s` seconds (and at the end)."""

  def __init__(self, total, label, every_s=5.0, stream=None):
    self.total, self.label, self.every_s = total, label, every_s
    self.stream = stream or sys.stdout
    self.started = self.last = time.time()

  def update(self, done, extra=""):
    now = time.time()
    if now - self.last < self.every_s and done < self.total:
      return
    self.last = now
    rate = done / max(now - self.started, 1e-9)
    eta = (self.total - done) / rate if rate > 0 else float("inf")
    print(f"{self.label} {done}/{self.total}  {rate:.2f}/s  ETA {format_duration(eta)}{extra}",
          file=self.stream, flush=True)


def format_duration(seconds):
  """12 -> '12s', 125 -> '2m05s', 3725 -> '1h02m'."""
  if seconds == float("inf"):
    return "?"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
