"""Array operations of the flow branch: correlation, warping, image measures."""

from mcjepa_jax.ops.correlation import correlation
from mcjepa_jax.ops.directions import swap_halves
from mcjepa_jax.ops.image import area_downsample, census_transform, image_gradients, soft_hamming, ssim_dissimilarity
from mcjepa_jax.ops.occlusion import fill_occluded_flow, forward_backward_occlusion
from mcjepa_jax.ops.warp import (bilinear_upsample_weights, convex_upsample, resize_flow, upsample_flow, warp,
                                  warp_edge, warp_with_mask)

__all__ = [
    "area_downsample",
    "bilinear_upsample_weights",
    "census_transform",
    "convex_upsample",
    "correlation",
    "fill_occluded_flow",
    "forward_backward_occlusion",
    "image_gradients",
    "resize_flow",
    "soft_hamming",
    "ssim_dissimilarity",
    "swap_halves",
    "upsample_flow",
    "warp",
    "warp_edge",
    "warp_with_mask",
]
