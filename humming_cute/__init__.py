"""humming-cute: JIT-compiled quantized GEMM kernels in CuTe DSL, called on torch tensors."""

from . import dtypes
from .config import GemmConfig
from .layer import HummingLayer
from .layouts.prepared import PreparedWeight, prepare_weight
from .moe_align import moe_align_block_size
from .ops import gemm, moe_gemm
from .quantize_input import quantize_input
from .tune.autotune import autotune
from .tune.moe_autotune import autotune_moe
from .runtime import torch_ops as _torch_ops  # noqa: F401  (registers the torch.ops.humming_cute ops)
from .quant import (QuantizedWeight, dequantize_weight, quantize_weight, pack, unpack, quantize_activation,
                    reference_gemm)

__version__ = "0.1.0"

__all__ = ["dtypes", "GemmConfig", "HummingLayer", "PreparedWeight", "prepare_weight", "gemm", "moe_gemm",
           "quantize_input", "moe_align_block_size", "autotune", "autotune_moe", "QuantizedWeight",
           "quantize_weight", "dequantize_weight", "pack", "unpack", "quantize_activation", "reference_gemm",
           "__version__"]
