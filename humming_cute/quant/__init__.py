"""Host-side quantization (pure torch, CPU or GPU): weights, packing, activations, the reference GEMM."""

from .weight import (  # noqa: F401
    QuantizedWeight, quantize_weight, dequantize_weight, quantize_to_codes, code_value_table, decode_scales,
    scale_torch_dtype,
)
from .pack import pack, unpack, pack_zero_points, unpack_zero_points, packed_size  # noqa: F401
from .activation import (  # noqa: F401
    ACTIVATION_QUANT_TYPES, quantize_activation, dequantize_activation, activation_storage_dtype,
    activation_max_value, round_to_float_format,
)
from .reference import (  # noqa: F401
    ACTIVATIONS, apply_activation, reference_gemm, reference_moe_gemm, moe_align_block_size_reference,
)
