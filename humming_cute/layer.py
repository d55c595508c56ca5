"""`HummingLayer`: a quantized linear layer. Load weights (codes + scales, a checkpoint's packed form, or a float
weight quantized on the fly; whole, one expert at a time, or a slice of N), call `finish_load()` once to repack
into the kernel layout, then call it like any module."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from . import dtypes as dt
from .config import GemmConfig
from .layouts.prepared import PreparedWeight, prepare_weight
from .layouts.weight import ATOM_N
from .quant.pack import unpack
from .quant.weight import QuantizedWeight, dequantize_weight, quantize_weight, scale_torch_dtype

__all__ = ["HummingLayer"]

_TORCH_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_SM75_WARNED = False


class HummingLayer(torch.nn.Module):
    """C = x @ dequant(W)^T * scales (+ bias) with W packed in `b_dtype` and x in `a_dtype`.

    `weight_scale_group_size`: 0 = one scale per output channel, G = one per G elements of K, or a 2-D block
    (bn, bk). `uintN` weights carry a zero point per scale group. `has_global_scale` adds an fp32 per-tensor
    scale (NVFP4 style). `activation` (a name, "<name>_glu", or a Python function, see
    `humming_cute.activations`) is fused into the epilogue; GLU layers read interleaved gate/up columns and
    return N/2 outputs."""

    def __init__(self, shape_n: int, shape_k: int, a_dtype=dt.float16, b_dtype=dt.uint4, c_dtype=None,
                 bs_dtype=dt.float16, weight_scale_group_size=128, has_bias: bool = False,
                 has_global_scale: bool = False, num_experts: Optional[int] = None,
                 activation=None, glu: bool = False, device=None):
        super().__init__()
        for name, v in (("shape_n", shape_n), ("shape_k", shape_k)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.a_dtype = dt.parse_dtype(a_dtype)
        self.b_dtype = dt.parse_dtype(b_dtype)
        self.act8 = self.a_dtype.name in ("float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1")   # quantized
        self.c_dtype = (dt.parse_dtype(c_dtype) if c_dtype is not None
                        else (dt.float16 if self.act8 else self.a_dtype))
        self.bs_dtype = dt.check_scale_dtype(bs_dtype)
        dt.check_legal_pair(self.a_dtype, self.b_dtype)
        if self.act8:
            from . import config as _config

            if self.a_dtype.name in _config.UNVERIFIED_ACT_TYPES and not _config.ALLOW_UNVERIFIED:
                raise NotImplementedError(f"{self.a_dtype.name} activations in the GEMM are built but not yet verified "
                                          f"on a GPU; they are not enabled")
        elif self.a_dtype.name not in _TORCH_HALF:
            raise NotImplementedError(f"{self.a_dtype.name} activations are not implemented yet; use float16, "
                                      f"bfloat16, float8e4m3, float8e5m2, int8 or int4")
        if self.c_dtype.name not in _TORCH_HALF:
            raise ValueError(f"c_dtype must be float16 or bfloat16, got {self.c_dtype.name}")
        if num_experts is not None and (not isinstance(num_experts, int) or num_experts <= 0):
            raise ValueError(f"num_experts must be a positive int or None, got {num_experts!r}")
        from .activations import resolve

        _, _, glu_resolved = resolve(activation, glu)   # validates the name / the function's arity
        if glu_resolved and shape_n % 2:
            raise ValueError(f"a GLU layer needs an even shape_n (interleaved gate/up columns), got {shape_n}")
        self.activation, self.glu = activation, glu
        self.shape_n, self.shape_k = shape_n, shape_k
        self.group_size = weight_scale_group_size
        self.has_zero_point = isinstance(self.b_dtype, dt.IntegerType) and not self.b_dtype.signed
        self.has_bias = has_bias
        self.has_global_scale = has_global_scale
        self.num_experts = num_experts
        lead = () if num_experts is None else (num_experts,)
        bn, bk = self._block()
        s_shape = lead + (-(-shape_n // bn), -(-shape_k // bk))
        kw = dict(device=device)
        self.register_buffer("weight_codes", torch.zeros(*lead, shape_n, shape_k, dtype=torch.uint8, **kw))
        self.register_buffer("weight_scale", torch.ones(*s_shape, dtype=scale_torch_dtype(self.bs_dtype), **kw))
        self.register_buffer("zero_point", torch.zeros(*s_shape, dtype=torch.uint8, **kw)
                             if self.has_zero_point else None)
        self.register_buffer("global_scale", torch.ones(*lead, dtype=torch.float32, **kw)
                             if has_global_scale else None)
        self.register_buffer("bias", torch.zeros(*lead, shape_n, dtype=_TORCH_HALF[self.c_dtype.name], **kw)
                             if has_bias else None)
        self._prepared: Optional[PreparedWeight] = None

    # ------------------------------------------------------------------ loading
    def _block(self) -> tuple[int, int]:
        g = self.group_size
        if isinstance(g, tuple):
            return g
        if not isinstance(g, int) or g < 0:
            raise ValueError(f"weight_scale_group_size must be 0, a power of two or a (bn, bk) tuple, got {g!r}")
        if g == 0:
            return (1, self.shape_k)
        if g & (g - 1) or g < 16:
            raise ValueError(f"weight_scale_group_size must be 0 or a power of two >= 16, got {g}")
        if self.shape_k % g:
            raise ValueError(f"K={self.shape_k} is not divisible by weight_scale_group_size={g}")
        return (1, g)

    def _target(self, name: str, expert_id: Optional[int]) -> torch.Tensor:
        buf = getattr(self, name)
        if self.num_experts is None:
            if expert_id is not None:
                raise ValueError("expert_id given for a dense layer (num_experts=None)")
            return buf
        if expert_id is None:
            return buf
        if not 0 <= expert_id < self.num_experts:
            raise ValueError(f"expert_id must be in [0, {self.num_experts}), got {expert_id}")
        return buf[expert_id]

    @torch.no_grad()
    def load_weight(self, weight: Optional[torch.Tensor] = None, weight_scale: Optional[torch.Tensor] = None,
                    zero_point: Optional[torch.Tensor] = None, global_scale=None, bias: Optional[torch.Tensor] = None,
                    *, offset_n: int = 0, expert_id: Optional[int] = None, packed: bool = False) -> None:
        """Load (part of) the weight.

        `weight` is one of: uint8 codes [n, K]; int32 codes bit-packed along K (`quant.pack`, `packed=True`);
        or a float tensor [n, K], quantized here with the layer's types and group size (then `weight_scale`
        etc. must be None). Rows land at `offset_n` (fused QKV / gate-up slices); `expert_id` picks an expert."""
        self._prepared = None
        codes_buf = self._target("weight_codes", expert_id)
        if weight is not None:
            if not isinstance(weight, torch.Tensor):
                raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
            if weight.is_floating_point():
                if weight_scale is not None or zero_point is not None:
                    raise ValueError("a float weight is quantized here: do not pass weight_scale/zero_point with it")
                self._load_float(weight, offset_n, expert_id)
                if bias is not None:
                    self._load_rows("bias", bias, offset_n, expert_id, rows_dim=-1)
                return
            if packed:
                if weight.dtype != torch.int32:
                    raise TypeError(f"packed weights are int32 words, got {weight.dtype}")
                weight = unpack(weight, self.b_dtype.bits, self.shape_k)
            if weight.dtype != torch.uint8:
                raise TypeError(f"weight codes must be uint8 (or int32 with packed=True, or a float tensor), got "
                                f"{weight.dtype}")
            if weight.shape[-1] != self.shape_k:
                raise ValueError(f"weight has K={weight.shape[-1]}, the layer has K={self.shape_k}")
            if self.b_dtype.bits < 8 and weight.numel() and int(weight.max()) >= (1 << self.b_dtype.bits):
                raise ValueError(f"a code is >= 2^{self.b_dtype.bits}: not a valid {self.b_dtype.name} code")
            self._load_rows_into(codes_buf, weight, offset_n, "weight")
        if weight_scale is not None:
            want = scale_torch_dtype(self.bs_dtype)
            if weight_scale.dtype != want:
                raise TypeError(f"weight_scale must be {want} for bs_dtype {self.bs_dtype.name}, got "
                                f"{weight_scale.dtype}")
            bn, _ = self._block()
            if offset_n % bn:
                raise ValueError(f"offset_n={offset_n} must be a multiple of the scale block's N={bn}")
            self._load_rows_into(self._target("weight_scale", expert_id), weight_scale, offset_n // bn,
                                 "weight_scale")
        if zero_point is not None:
            if not self.has_zero_point:
                raise ValueError(f"{self.b_dtype.name} weights take no zero point")
            if zero_point.dtype != torch.uint8:
                raise TypeError(f"zero_point must be uint8 integer zero points, got {zero_point.dtype}")
            bn, _ = self._block()
            self._load_rows_into(self._target("zero_point", expert_id), zero_point, offset_n // bn, "zero_point")
        if global_scale is not None:
            if not self.has_global_scale:
                raise ValueError("this layer was built with has_global_scale=False")
            gs = self._target("global_scale", expert_id)
            gs.copy_(torch.as_tensor(global_scale, dtype=torch.float32).reshape(gs.shape))
        if bias is not None:
            self._load_rows("bias", bias, offset_n, expert_id, rows_dim=-1)

    def _load_rows(self, name, src, offset, expert_id, rows_dim=-2):
        buf = self._target(name, expert_id)
        if buf is None:
            raise ValueError(f"this layer was built without {name}")
        n = src.shape[rows_dim]
        if offset < 0 or offset + n > buf.shape[rows_dim]:
            raise ValueError(f"{name}: rows [{offset}, {offset + n}) exceed N={buf.shape[rows_dim]}")
        if src.shape[:rows_dim] != buf.shape[:rows_dim] if rows_dim == -1 else False:
            raise ValueError(f"{name}: shape {tuple(src.shape)} does not fit {tuple(buf.shape)}")
        buf.narrow(rows_dim, offset, n).copy_(src)

    def _load_rows_into(self, buf: torch.Tensor, src: torch.Tensor, offset: int, what: str) -> None:
        if src.dim() != buf.dim() or src.shape[-1] != buf.shape[-1] or (src.dim() == 3 and src.shape[0] != buf.shape[0]):
            raise ValueError(f"{what}: shape {tuple(src.shape)} does not fit the layer's {tuple(buf.shape)}")
        n = src.shape[-2]
        if offset < 0 or offset + n > buf.shape[-2]:
            raise ValueError(f"{what}: rows [{offset}, {offset + n}) exceed the layer's {buf.shape[-2]} rows")
        buf.narrow(-2, offset, n).copy_(src)

    def _load_float(self, w: torch.Tensor, offset_n: int, expert_id: Optional[int]) -> None:
        qw = quantize_weight(w.to(self.weight_codes.device), self.b_dtype, self.group_size, self.bs_dtype,
                             global_scale=self.has_global_scale)
        codes_buf = self._target("weight_codes", expert_id)
        self._load_rows_into(codes_buf, qw.codes, offset_n, "weight")
        bn, _ = self._block()
        if offset_n % bn:
            raise ValueError(f"offset_n={offset_n} must be a multiple of the scale block's N={bn}")
        self._load_rows_into(self._target("weight_scale", expert_id), qw.scales, offset_n // bn, "weight_scale")
        if self.has_zero_point:
            self._load_rows_into(self._target("zero_point", expert_id), qw.zero_points, offset_n // bn,
                                 "zero_point")
        if self.has_global_scale:
            if offset_n or w.shape[-2] != self.shape_n:
                raise ValueError("a float weight with a global scale must be loaded whole (no offset_n slices)")
            self._target("global_scale", expert_id).copy_(qw.global_scale)

    def quantized_weight(self) -> QuantizedWeight:
        """The loaded weight as codes + scales (the reference's input)."""
        return QuantizedWeight(self.weight_codes, self.b_dtype, self.weight_scale, self.bs_dtype, self.group_size,
                               self.zero_point, self.global_scale)

    @torch.no_grad()
    def finish_load(self) -> None:
        """Repack the loaded weight into the kernel layout (once). Call after the last `load_weight`."""
        self._prepared = prepare_weight(self.quantized_weight(), self.a_dtype)

    transform = finish_load

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, block_shape: Optional[Sequence[int]] = None,
                warp_shape: Optional[Sequence[int]] = None, stages: int = 4, split_k: int = 1,
                batch_invariant: bool = False, x_scales: Optional[torch.Tensor] = None) -> torch.Tensor:
        """y[..., N] for x[..., K]. `block_shape=(BM, BN, BK)` / `warp_shape=(WM, WN, WK)` pick the tiles;
        by default a config is chosen from M (`batch_invariant=True`: one K reduction order for every M).

        8/4-bit activation layers take x in fp16/bf16/fp32 and quantize it per token on the GPU
        (`humming_cute.quantize_input`, one fused kernel), or x already quantized (the codes `quantize_input`
        gives) with its per-token fp32 `x_scales` ([..., 1] or [...])."""
        from .ops import gemm

        if self._prepared is None:
            raise RuntimeError("call finish_load() after loading the weight and before the first forward")
        if self.num_experts is not None:
            raise TypeError("an MoE layer is called with its routing: use layer.moe_forward(x, topk_ids, ...)")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.shape[-1] != self.shape_k:
            raise ValueError(f"x has K={x.shape[-1]}, the layer has K={self.shape_k}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.shape_k)
        if self.act8:
            return self._forward_act8(x2, x_scales, block_shape, warp_shape, stages).reshape(*lead, -1)
        if x_scales is not None:
            raise ValueError("x_scales is for 8-bit activation layers")
        if x.device.type == "cuda" and torch.cuda.get_device_capability(x.device) < (8, 0):
            y = self._fallback(x2)
            return y.reshape(*lead, y.shape[-1])
        cfg = None
        if block_shape is not None or warp_shape is not None:
            cfg = self._config_from_shapes(block_shape, warp_shape, stages, x.device, split_k)
        if cfg is None and torch.compiler.is_compiling() and not callable(self.activation):
            # traced by torch.compile / torch.export: go through the registered custom op (fake impl for shapes)
            from .activations import resolve
            from .runtime.torch_ops import call_gemm_op

            y = call_gemm_op(x2, self._prepared, self.bias, _TORCH_HALF[self.c_dtype.name],
                             resolve(self.activation, self.glu)[0], batch_invariant)
        else:
            y = gemm(x2, self._prepared, bias=self.bias, out_dtype=_TORCH_HALF[self.c_dtype.name], config=cfg,
                     batch_invariant=batch_invariant, activation=self.activation, glu=self.glu)
        return y.reshape(*lead, y.shape[-1])

    def _act8_input(self, x2: torch.Tensor, x_scales: Optional[torch.Tensor]) -> tuple:
        """(codes, per-row fp32 scales [rows, 1]): fp16/bf16/fp32 x quantized per token here, or x already holding
        this layer's codes with their scales."""
        from .quant.activation import activation_storage_dtype

        codes_dtype = activation_storage_dtype(self.a_dtype)   # int4: int8 values in [-8, 7], one per byte
        if x2.dtype in (torch.float16, torch.bfloat16, torch.float32):
            if x_scales is not None:
                raise ValueError("x_scales comes with already-quantized x; pass the float x alone to quantize it here")
            from .quantize_input import quantize_input

            x2, x_scales = quantize_input(x2, self.a_dtype.name, 0)
        elif x_scales is None:
            raise ValueError(f"quantized x ({x2.dtype}) needs its per-token fp32 x_scales")
        elif x2.dtype != codes_dtype:
            raise TypeError(f"x holds {x2.dtype} codes; this layer takes {self.a_dtype.name} activations")
        return x2, x_scales.reshape(x2.shape[0], -1).float().contiguous()

    def _forward_act8(self, x2, x_scales, block_shape, warp_shape, stages) -> torch.Tensor:
        from .ops import gemm

        x2, x_scales = self._act8_input(x2, x_scales)
        cfg = None
        if block_shape is not None or warp_shape is not None:
            cfg = self._config_from_shapes(block_shape, warp_shape, stages, x2.device, 1)
        return gemm(x2, self._prepared, bias=self.bias, out_dtype=_TORCH_HALF[self.c_dtype.name], config=cfg,
                    activation=self.activation, glu=self.glu, x_scales=x_scales)

    def moe_block_size(self, num_tokens: int, top_k: int) -> int:
        """The block size to align the routing with (`moe_align_block_size(topk_ids, block_m, E)`); it depends
        on the GPU the layer's weights live on (sm_90 takes larger wgmma blocks)."""
        from .activations import resolve
        from .ops import device_target
        from .tune.heuristics import moe_block144_tile, moe_block_size, moe_uses_wgmma

        dev = self.weight_codes.device
        act_name, _, glu = resolve(self.activation, self.glu)
        wgmma = (dev.type == "cuda" and not self.act8
                 and moe_uses_wgmma(device_target(dev), self.a_dtype.name, epilogue=act_name != "none", glu=glu))
        n_pad = self._prepared.n_pad if self._prepared is not None else -(-self.shape_n // ATOM_N) * ATOM_N
        return moe_block_size(num_tokens, top_k, self.num_experts or 1, wgmma=wgmma,
                              block144=moe_block144_tile(self.a_dtype.name, self.b_dtype.name, n_pad, glu))

    def moe_forward(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: Optional[torch.Tensor] = None,
                    *, is_down: bool = False, mul_topk_weights: Optional[bool] = None,
                    expert_map: Optional[torch.Tensor] = None,
                    x_scales: Optional[torch.Tensor] = None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """MoE layer: route `x` by `topk_ids` [M, top_k]; returns [M, top_k, N'] (rows of experts mapped to -1
        by `expert_map`, and of ids outside [0, E), are zero). Up/gate: x is [M, K]; down (`is_down`): x is
        [M * top_k, K], and the routing weights multiply the output unless `mul_topk_weights=False`. With 8/4-bit
        activations x is quantized per row here, or holds codes with their per-row fp32 `x_scales`. `out`: a
        contiguous [M, top_k, N'] buffer of the layer's output dtype to write into instead (rows the GEMM skips
        keep its values; an uninitialised buffer saves the zero fill of a new output when every id is routed to a
        local expert)."""
        from .moe_align import moe_align_block_size
        from .ops import moe_gemm

        m, top_k, block_m = self._moe_routing_shape(topk_ids, "moe_forward")
        rows = m * top_k if is_down else m
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] != rows:
            raise ValueError(f"x must be [{rows}, K] for topk_ids of shape {tuple(topk_ids.shape)} "
                             f"({'down projection: M * top_k rows' if is_down else 'up projection: M rows'}), got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        mul = is_down if mul_topk_weights is None else mul_topk_weights
        if torch.compiler.is_compiling() and not self.act8 and not callable(self.activation):
            # traced by torch.compile / torch.export: the alignment and the GEMM as registered custom ops
            from .activations import resolve
            from .runtime.torch_ops import call_moe_gemm_op

            if x_scales is not None:
                raise ValueError("x_scales is for 8/4-bit activation layers")
            if out is not None:
                raise NotImplementedError("moe_forward(out=...) is not taken under torch.compile / torch.export")
            routing = torch.ops.humming_cute.moe_align_block_size(topk_ids, block_m, self.num_experts, expert_map)
            return call_moe_gemm_op(x, self._prepared, routing, top_k=top_k, block_m=block_m,
                                    topk_weights=topk_weights, mul_topk_weights=mul, is_down=is_down, bias=self.bias,
                                    out_dtype=_TORCH_HALF[self.c_dtype.name],
                                    activation=resolve(self.activation, self.glu)[0])
        sorted_ids, expert_ids, num_post = moe_align_block_size(topk_ids, block_m, self.num_experts, expert_map)
        if self.act8:
            x, x_scales = self._act8_input(x, x_scales)
        elif x_scales is not None:
            raise ValueError("x_scales is for 8/4-bit activation layers")
        return moe_gemm(x, self._prepared, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                        topk_weights=topk_weights, mul_topk_weights=mul, is_down=is_down, bias=self.bias,
                        activation=self.activation, glu=self.glu, out_dtype=_TORCH_HALF[self.c_dtype.name],
                        x_scales=x_scales, out=out)

    def _moe_routing_shape(self, topk_ids: torch.Tensor, what: str) -> tuple:
        """(M, top_k, routing block) of a call with `topk_ids`, after checking that this is a loaded MoE layer."""
        if self.num_experts is None:
            raise TypeError(f"{what} needs an MoE layer (num_experts=E)")
        if self._prepared is None:
            raise RuntimeError(f"call finish_load() after loading the weights and before {what}")
        if not isinstance(topk_ids, torch.Tensor) or topk_ids.dim() != 2:
            raise ValueError(f"topk_ids must be a tensor [M, top_k], got {getattr(topk_ids, 'shape', topk_ids)}")
        m, top_k = topk_ids.shape
        return m, top_k, self.moe_block_size(m, top_k)

    def autotune_moe(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: Optional[torch.Tensor] = None,
                     *, is_down: bool = False, mul_topk_weights: Optional[bool] = None,
                     expert_map: Optional[torch.Tensor] = None, x_scales: Optional[torch.Tensor] = None,
                     **kw) -> GemmConfig:
        """Tune this MoE layer's GEMM for `moe_forward(x, topk_ids, ...)` with these arguments (a real routing of
        the token count to serve): `humming_cute.autotune_moe` with the layer's routing block; later calls of that
        token-count bucket take the winner. `kw`: autotune_moe's options (rep_ms, max_candidates, verbose, ...)."""
        from .moe_align import moe_align_block_size
        from .tune.moe_autotune import autotune_moe

        m, top_k, block_m = self._moe_routing_shape(topk_ids, "autotune_moe")
        routing = moe_align_block_size(topk_ids, block_m, self.num_experts, expert_map)
        if self.act8:
            x, x_scales = self._act8_input(x, x_scales)
        elif x_scales is not None:
            raise ValueError("x_scales is for 8/4-bit activation layers")
        return autotune_moe(x, self._prepared, *routing, top_k=top_k, block_m=block_m, topk_weights=topk_weights,
                            mul_topk_weights=is_down if mul_topk_weights is None else mul_topk_weights,
                            is_down=is_down, bias=self.bias, activation=self.activation, glu=self.glu,
                            out_dtype=_TORCH_HALF[self.c_dtype.name], x_scales=x_scales, **kw)

    def _config_from_shapes(self, block_shape, warp_shape, stages, device, split_k=1) -> GemmConfig:
        from .arch import current_arch

        if block_shape is None or warp_shape is None:
            raise ValueError("give both block_shape=(BM, BN, BK) and warp_shape=(WM, WN, WK)")
        if len(block_shape) != 3 or len(warp_shape) not in (2, 3):
            raise ValueError(f"block_shape must be (BM, BN, BK) and warp_shape (WM, WN[, WK]), got {block_shape}, "
                             f"{warp_shape}")
        bm, bn, bk = block_shape
        wm, wn = warp_shape[0], warp_shape[1]
        wk = warp_shape[2] if len(warp_shape) == 3 else bk
        from .activations import resolve

        act_name, act_fn, glu = resolve(self.activation, self.glu)
        p = self._prepared
        cfg = GemmConfig(activation=act_name, custom_activation=act_fn, glu=glu, a_dtype=p.a_dtype,
                         b_dtype=p.b_dtype, c_dtype=self.c_dtype.name, group_size=p.group_size,
                         has_bias=self.has_bias, block_m=bm, block_n=bn, block_k=bk,
                         warp_m=wm, warp_n=wn, warp_k=wk, stages=stages, split_k=split_k,
                         arch=current_arch(device).target)
        return cfg.validate()

    def _fallback(self, x2: torch.Tensor) -> torch.Tensor:
        """SM75 (no CuTe DSL target): dequantize with torch and multiply with torch. Correct, not fast."""
        global _SM75_WARNED
        if not _SM75_WARNED:
            warnings.warn("humming_cute: this GPU is older than sm_80, which the CuTe DSL cannot target; using a "
                          "slow torch dequantize + matmul fallback", RuntimeWarning, stacklevel=3)
            _SM75_WARNED = True
        from .quant.reference import apply_activation

        w = dequantize_weight(self.quantized_weight(), torch.float32)
        y = x2.float() @ w.t()
        if self.bias is not None:
            y = y + self.bias.float()
        if self.activation is not None:
            y = apply_activation(y, self.activation, glu=self.glu)
        return y.to(_TORCH_HALF[self.c_dtype.name])
