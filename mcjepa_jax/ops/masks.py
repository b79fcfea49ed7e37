"""I-JEPA block masks on a token grid, drawn inside the jitted step with static shapes.

Per image (I-JEPA, Assran et al. 2023; block sizes as its `MaskCollator`):
  - `num_targets` target blocks, each of scale s ~ U(target_scale) of the N
    tokens and aspect a ~ log-U(target_aspect): h = round(sqrt(s N a)),
    w = round(sqrt(s N / a)), clipped below the grid side, at a uniform position;
  - one context block of scale ~ U(context_scale), aspect 1, from which every
    token of every target block is removed (no target is visible to the predictor).

Counts are equalised so that shapes are static under jit: each target block
keeps `target_tokens(...)` of its tokens (a random subset; the smallest block
the ranges allow has exactly that many, so nothing is ever padded), and the
context keeps `context_tokens(...)` (random subset; when an image has fewer,
the rest are marked invalid and ignored by attention). I-JEPA instead truncates
to the smallest count of each batch, whose shape then changes every step.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _block_side(scale, aspect, tokens, grid):
  """(h, w) of a block (numpy or jax scalars); clipped to [1, side - 1] as I-JEPA does."""
  rnd = jnp.round if isinstance(scale, jax.Array) else np.round
  clip = jnp.clip if isinstance(scale, jax.Array) else np.clip
  h = clip(rnd((scale * tokens * aspect)**0.5), 1, max(grid[0] - 1, 1))
  w = clip(rnd((scale * tokens / aspect)**0.5), 1, max(grid[1] - 1, 1))
  return h, w


def target_tokens(grid, cfg):
  """Tokens kept per target block: the area of the smallest block (h grows with s and a, w with s and 1/a)."""
  tokens = grid[0] * grid[1]
  h, _ = _block_side(cfg.target_scale[0], cfg.target_aspect[0], tokens, grid)
  _, w = _block_side(cfg.target_scale[0], cfg.target_aspect[1], tokens, grid)
  return int(h * w)


def context_tokens(grid, cfg):
  """Context tokens per image: `context_keep` of the grid, at least one."""
  return max(1, int(math.floor(cfg.context_keep * grid[0] * grid[1])))


def _block(key, scale_range, aspect_range, grid):
  """[rows, cols] bool mask of one random block."""
  k_scale, k_aspect, k_top, k_left = jax.random.split(key, 4)
  scale = jax.random.uniform(k_scale, (), minval=scale_range[0], maxval=scale_range[1])
  log_aspect = jax.random.uniform(k_aspect, (), minval=math.log(aspect_range[0]), maxval=math.log(aspect_range[1]))
  h, w = _block_side(scale, jnp.exp(log_aspect), grid[0] * grid[1], grid)
  top = jnp.floor(jax.random.uniform(k_top, ()) * (grid[0] - h + 1))
  left = jnp.floor(jax.random.uniform(k_left, ()) * (grid[1] - w + 1))
  rows = jnp.arange(grid[0])[:, None]
  cols = jnp.arange(grid[1])[None, :]
  return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def _choose(key, allowed, count):
  """`count` random indices among the True entries of flat `allowed` (ascending), and which are real."""
  priority = jnp.where(allowed, jax.random.uniform(key, allowed.shape), 2.0)
  chosen = jnp.sort(jax.lax.top_k(-priority, count)[1])
  return chosen.astype(jnp.int32), allowed[chosen]


def _image_masks(key, grid, cfg, num_context, num_target):
  keys = jax.random.split(key, cfg.num_targets + 3)
  targets = [_block(keys[i], cfg.target_scale, cfg.target_aspect, grid).reshape(-1)
             for i in range(cfg.num_targets)]
  context = _block(keys[-3], cfg.context_scale, (1.0, 1.0), grid).reshape(-1)
  for target in targets:
    context = context & ~target
  context_indices, context_valid = _choose(keys[-2], context, num_context)
  target_keys = jax.random.split(keys[-1], cfg.num_targets)
  target_indices = jnp.stack([_choose(k, t, num_target)[0] for k, t in zip(target_keys, targets)])
  return {"context_indices": context_indices, "context_valid": context_valid, "target_indices": target_indices,
          "target_masks": jnp.stack(targets)}


def sample_masks(key, batch, grid, cfg):
  """Context and target masks for `batch` images on a `grid` = (rows, cols) of tokens.

  Args:
    key: PRNG key (the same key gives the same masks).
    batch: number of images.
    grid: token grid (static).
    cfg: `config.loss.ijepa` (num_targets, target_scale, target_aspect,
      context_scale, context_keep).

  Returns:
    dict: "context_indices" [B, C] int32 (ascending), "context_valid" [B, C] bool,
    "target_indices" [B, T, K] int32, all row-major positions on the grid, and
    "target_masks" [B, T, rows * cols] bool, the whole target blocks.
  """
  grid = tuple(int(g) for g in grid)
  sample = lambda k: _image_masks(k, grid, cfg, context_tokens(grid, cfg), target_tokens(grid, cfg))
  return jax.vmap(sample)(jax.random.split(key, batch))
