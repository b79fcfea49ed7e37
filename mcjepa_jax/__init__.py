"""mcjepa_jax: a JAX/Flax implementation of MC-JEPA (Bardes, Ponce, LeCun 2023).

One shared encoder learns motion (self-supervised optical flow, PWC-style head)
and content (VICReg) at once. See DESIGN.md for the specification; every
module names the section it implements.
"""

__version__ = "0.1.0"

_PUBLIC = {"load_pretrained": "mcjepa_jax.inference", "predict_flow": "mcjepa_jax.inference",
           "features": "mcjepa_jax.inference"}


def __getattr__(name):
  # Imported on first use, so `import mcjepa_jax` stays light (no JAX until a model is needed).
  if name in _PUBLIC:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_PUBLIC[name]), name)
  raise AttributeError(f"module 'mcjepa_jax' has no attribute {name!r}")
