"""Flax modules: ConvNeXt encoder, PWC flow head, VICReg expander, MC-JEPA."""

from mcjepa_jax.models.convnext import ConvNeXtEncoder
from mcjepa_jax.models.expander import Expander
from mcjepa_jax.models.flow_head import PWCFlowHead
from mcjepa_jax.models.mcjepa import MCJEPA, build_model

__all__ = ["ConvNeXtEncoder", "Expander", "MCJEPA", "PWCFlowHead", "build_model"]
