"""mcjepa_jax: a JAX/Flax implementation of MC-JEPA (Bardes, Ponce, LeCun 2023).

One shared encoder learns motion (self-supervised optical flow, PWC-style head)
and content (VICReg) at once. See DESIGN.md for the specification; every
module names the section it implements.
"""

__version__ = "0.1.0"
