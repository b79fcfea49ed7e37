"""Counting the matmul and convolution FLOPs of a function from its jaxpr.

The count is the program's, before any backend sees it: the same on every
backend and mesh, available without compiling (the paper step compiles for
over a minute on the CPU), and, traced through `jax.grad`, it holds the
backward pass. It is what a step time is compared with against a machine's
matmul rate. Only `dot_general` and `conv_general_dilated` are counted (2
FLOPs per multiply-add): elementwise work, reductions, the depthwise
convolution when it runs as shifted multiply-adds (`depthwise="shifts"`) and
Pallas kernels are left out.
"""

import math

import jax


def _sub_jaxprs(value):
  """The jaxprs held by one equation parameter (a jaxpr, a closed jaxpr or a tuple of them)."""
  if isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)
  elif hasattr(value, "jaxpr") and hasattr(value, "consts"):  # ClosedJaxpr
    yield value.jaxpr
  elif hasattr(value, "eqns") and hasattr(value, "invars"):  # Jaxpr
    yield value


def _equation_flops(eqn):
  name = eqn.primitive.name
  if name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
  if name == "conv_general_dilated":
    rhs = eqn.invars[1].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    # Each output element is one dot product over the kernel's window and its input features
    # (per group, which the kernel's shape already has).
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // out_features
  return 0


def jaxpr_flops(jaxpr):
  """Matmul + convolution FLOPs of a (closed) jaxpr, sub-jaxprs included.

  A `scan` counts its body `length` times; a `cond` its costliest branch; a
  `while` loop its body once (its trip count is not known statically).
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    total += _equation_flops(eqn)
    subs = [list(_sub_jaxprs(v)) for v in eqn.params.values()]
    subs = [s for group in subs for s in group]
    if not subs:
      continue
    if eqn.primitive.name == "cond":
      total += max(jaxpr_flops(s) for s in subs)
    elif eqn.primitive.name == "scan":
      total += eqn.params["length"] * sum(jaxpr_flops(s) for s in subs)
    else:
      total += sum(jaxpr_flops(s) for s in subs)
  return total


def count_flops(fn, *args):
  """Matmul + convolution FLOPs of one call fn(*args); args may be ShapeDtypeStructs (nothing runs)."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args))
