"""The seed's MC-JEPA variant: a shared ViT-S/16 encoder, I-JEPA content objective with an EMA target.

Usage: --config configs/mcjepa_vit_ijepa.py[:paper]   (paper-scale batch; issue 16)
Everything but the encoder and the content objective is configs/mcjepa_convnext_t.py (the same
flow head, flow losses, data, schedule and sharding): the two are compared in one codebase.
The flow head reads the ViT through a multi-scale adapter (models/vit.py): a convolutional
stem for levels 1-2, the stride-16 tokens resampled for levels 3-6.
`base` (ViT-B/16) after the colon swaps the encoder size, e.g. configs/mcjepa_vit_ijepa.py:base.
"""

import os

import ml_collections

from mcjepa_jax.config_utils import load_module, parse_arg

VIT_SIZES = {  # (width, depth, heads): ViT-S/16 and ViT-B/16 (Dosovitskiy et al.; DeiT)
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


def vit_encoder(width, depth, num_heads, patch_size=16, stem_widths=(48, 48), adapter_widths=(96, 192, 384, 768),
                posemb_grid=(14, 14)):
  """config.model.encoder for a ViT with the multi-scale adapter (models/vit.py)."""
  return ml_collections.ConfigDict(dict(
      name="vit",
      patch_size=patch_size,
      width=width,
      depth=depth,
      num_heads=num_heads,
      mlp_ratio=4.0,
      posemb="sincos",               # fixed 2-D sin-cos (I-JEPA); "learn": a posemb_grid table, resized
      posemb_grid=posemb_grid,       # 224 / 16
      layer_scale_init=0.0,          # 0 = off (I-JEPA has none)
      drop_path_rate=0.0,            # I-JEPA's value
      norm_eps=1e-6,
      stem_widths=stem_widths,       # levels 1 (H/2) and 2 (H/4): the ConvNeXt split stem
      stem_kernels=(4, 4),           # even kernels keep levels on the half-pixel grid
      adapter_widths=adapter_widths,  # levels 3-6 (H/8 .. H/64), as ConvNeXt-T's stage widths
  ))


def use_vit_ijepa(config, encoder, predictor):
  """Switches a config (built by mcjepa_convnext_t.py) to a ViT encoder and the I-JEPA objective, in place."""
  config.model.encoder = encoder
  config.model.predictor = predictor
  config.loss.content.name = "ijepa"  # model.content follows (a reference)
  # DAVIS propagation reads the adapter level at the tokens' stride (a 1x1 projection of them).
  config.eval.davis.level = (encoder.patch_size.bit_length() - 1)
  return config


def get_config(arg=None):
  arg = parse_arg(arg, paper=False, base=False)
  convnext = load_module(os.path.join(os.path.dirname(__file__), "mcjepa_convnext_t.py"))
  config = convnext.get_config("paper" if arg.paper else None)
  width, depth, heads = VIT_SIZES["base" if arg.base else "small"]
  # I-JEPA's predictor for ViT-S/B-sized encoders: 384 wide, 12 heads; 6 blocks (our choice, half of I-JEPA's 12).
  predictor = ml_collections.ConfigDict(dict(width=384, depth=6, num_heads=12, mlp_ratio=4.0, norm_eps=1e-6))
  return use_vit_ijepa(config, vit_encoder(width, depth, heads), predictor)
