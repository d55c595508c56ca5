"""Public GEMM entry point on torch tensors: `gemm(x, weight, ...)`."""

from __future__ import annotations

import contextlib
import weakref
from typing import Optional

import torch

from .activations import resolve
from .config import GemmConfig, act_bits, check_weight_tiles
from .layouts.prepared import PreparedWeight
from .runtime import compile as _rc
from .tune import default_config

__all__ = ["gemm"]

_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float8e4m3": torch.float8_e4m3fn,
          "float8e5m2": torch.float8_e5m2, "int8": torch.int8, "int4": torch.int8, "float4e2m1": torch.uint8}
_ACT8 = ("float8e4m3", "float8e5m2", "int8", "int4", "float4e2m1")   # quantized activations: codes + fp32 scales
_C_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
_DUMMIES: dict = {}


def _dummy(device, dtype, n=8):
    key = (device, dtype, n)
    t = _DUMMIES.get(key)
    if t is None:
        t = torch.zeros(n, dtype=dtype, device=device)
        _DUMMIES[key] = t
    return t


_COUNTERS: dict = {}


def _split_counters(device: torch.device, tiles: int) -> torch.Tensor:
    """Zeroed per-tile arrival counters for split-K, one buffer per (device, stream): the kernel resets every
    counter it used, so the buffer is reusable by the next launch on that stream (and by CUDA graph replays)."""
    stream = torch.cuda.current_stream(device)
    key = (device, stream.cuda_stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < tiles:
        buf = torch.zeros(max(tiles, 1024), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


_ARCHS: dict = {}
_DEFAULTS: dict = {}
_SMS: dict = {}


def device_target(device: torch.device) -> str:
    """The CuTe DSL target of a CUDA device (e.g. "sm_90a"), looked up once per device."""
    t = _ARCHS.get(device)
    if t is None:
        from .arch import current_arch

        t = _ARCHS[device] = current_arch(device).target
    return t


def _num_sms(device: torch.device) -> int:
    n = _SMS.get(device)
    if n is None:
        n = _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return n


def check_input(x: torch.Tensor, w: PreparedWeight, bias: Optional[torch.Tensor]) -> None:
    """Cheap shape/dtype/device checks with clear messages (before anything is compiled)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != _TORCH[w.a_dtype]:
        raise TypeError(f"x has dtype {x.dtype}; this weight was prepared for {w.a_dtype} activations")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D [M, K], got shape {tuple(x.shape)}")
    if x.shape[1] != w.shape_k:
        raise ValueError(f"x has K={x.shape[1]}, the weight has K={w.shape_k}")
    if x.device != w.device:
        raise ValueError(f"x is on {x.device}, the weight on {w.device}")
    if x.device.type != "cuda":
        raise ValueError("the kernels run on CUDA tensors; x is on the CPU")
    if bias is not None:
        if bias.shape != (w.shape_n,):
            raise ValueError(f"bias must have shape ({w.shape_n},), got {tuple(bias.shape)}")
        if bias.device != x.device:
            raise ValueError(f"bias is on {bias.device}, x on {x.device}")


def gemm(x: torch.Tensor, weight: PreparedWeight, *, bias: Optional[torch.Tensor] = None,
         out_dtype: Optional[torch.dtype] = None, config: Optional[GemmConfig] = None,
         out: Optional[torch.Tensor] = None, batch_invariant: bool = False, activation=None,
         glu: bool = False, x_scales: Optional[torch.Tensor] = None, fp8_fast_accum: bool = True,
         use_f16_accum: bool = False) -> torch.Tensor:
    """C[M, N] = act((x @ dequant(W)^T) * scales + bias), on the current CUDA stream.

    `activation`: None, a name ("relu", "silu", "gelu", "gelu_tanh", "quick_gelu", "sigmoid", "tanh", or
    "<name>_glu"), or a Python function of one value (two, gate and up, with `glu=True`) written with
    `humming_cute.activations` math; it is compiled into the epilogue. GLU reads gate/up from interleaved
    columns (2j, 2j + 1) and returns N/2 columns. `batch_invariant=True` (default configs only) keeps a row's
    result bitwise independent of M. 8/4-bit activations (a weight prepared for fp8 / int8 / int4 / e2m1): x
    holds the codes (int4: int8 values in [-8, 7], not range-checked; e2m1: uint8 codes; one per byte) and
    `x_scales` the fp32 scales, [M] / [M, 1] per token or [M, K / g] per group of g along K;
    `fp8_fast_accum=False` (default configs) promotes fp8 wgmma partial sums to fp32 every k-tile (see
    `GemmConfig.fp8_fast_accum`); `use_f16_accum=True` (default configs; fp16 or e4m3 in, fp16 out) accumulates in fp16
    (`GemmConfig.use_f16_accum`)."""
    check_input(x, weight, bias)
    act8 = weight.a_dtype in _ACT8
    x_scales, x_group = _check_x_scales(x, weight, x_scales, out_dtype)
    if activation is None and not glu:
        act_name, act_fn = "none", None
    else:
        act_name, act_fn, glu = resolve(activation, glu)
        if glu and weight.shape_n % 2:
            raise ValueError(f"a GLU activation needs an even N (interleaved gate/up columns), got "
                             f"N={weight.shape_n}")
    c_dtype = out_dtype or x.dtype
    c_name = _C_NAMES.get(c_dtype)
    if c_name is None:
        raise TypeError(f"out_dtype must be torch.float16 or torch.bfloat16, got {c_dtype}")
    if bias is not None and bias.dtype != c_dtype:
        raise TypeError(f"bias must have the output dtype {c_dtype}, got {bias.dtype}")
    m = x.shape[0]
    dev = x.device
    n_out = weight.shape_n // 2 if (config.glu if config is not None else glu) else weight.shape_n
    if out is None:
        out = torch.empty(m, n_out, dtype=c_dtype, device=dev)
    elif out.shape != (m, n_out) or out.dtype != c_dtype or out.device != dev or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {c_dtype} tensor of shape ({m}, {n_out}) on "
                         f"{dev}, got {out.dtype} {tuple(out.shape)} on {out.device}")
    if config is None:
        # the default (config, kernel) of a problem is memoised: the hot path is one tuple lookup
        key = (m, id(weight), c_name, bias is not None, batch_invariant, dev, act_name, act_fn, glu, x_group,
               fp8_fast_accum, use_f16_accum)
        hit = _DEFAULTS.get(key)
        if hit is None or hit[0]() is not weight:
            cfg = default_config(m, weight.n_pad, weight.k_pad, a_dtype=weight.a_dtype, b_dtype=weight.b_dtype,
                                 c_dtype=c_name, group_size=weight.group_size, arch=device_target(dev),
                                 has_bias=bias is not None, num_sms=_num_sms(dev),
                                 batch_invariant=batch_invariant, glu=glu, act_group_size=x_group,
                                 fp8_fast_accum=fp8_fast_accum, mainloop="sm80" if use_f16_accum else None)
            if not (batch_invariant or glu or use_f16_accum or not fp8_fast_accum):
                # a tiling measured by `humming_cute.autotune` for this problem on this GPU, if there is one
                from .tune.autotune import tuned_config

                cfg = tuned_config(cfg, x, weight, bias=bias, out_dtype=c_dtype, x_scales=x_scales, x_group=x_group,
                                   c_name=c_name, arch=device_target(dev))
            if act_name != "none":
                cfg = cfg.with_(activation=act_name, custom_activation=act_fn, glu=glu)
            if use_f16_accum:   # fp16 accumulation exists on the mma.sync mainloop (chosen above)
                # (the swapped decode MMAs accumulate in fp32 only: the fp16 ones keep the usual operand order)
                cfg = cfg.with_(use_f16_accum=True, two_level_scales=False, swap_ab=False, rows8=False).validate()
            if len(_DEFAULTS) > 65536:
                _DEFAULTS.clear()
            hit = _DEFAULTS[key] = (weakref.ref(weight), cfg, _rc.get_kernel(cfg))
        _, config, kernel = hit
    else:
        if (config.a_dtype, config.b_dtype, config.group_size, config.has_bias) != \
                (weight.a_dtype, weight.b_dtype, weight.group_size, bias is not None):
            raise ValueError("config does not match the weight (a_dtype, b_dtype, group_size) or the bias argument")
        if activation is not None and (config.activation, config.custom_activation, config.glu) != \
                (act_name, act_fn, glu):
            raise ValueError("activation/glu arguments disagree with config.activation/custom_activation/glu")
        if config.glu and weight.shape_n % 2:
            raise ValueError(f"a GLU config needs an even N, got N={weight.shape_n}")
        if (not fp8_fast_accum and config.fp8_fast_accum) or (use_f16_accum and not config.use_f16_accum):
            raise ValueError("fp8_fast_accum=False / use_f16_accum=True ask for what the given config does not do: "
                             "set them in the config (the arguments choose default configs)")
        if config.act_group_size != x_group:
            raise ValueError(f"config.act_group_size={config.act_group_size} does not match x_scales (group "
                             f"{x_group}; 0 = per token)")
        check_weight_tiles(config, weight.n_pad, weight.k_pad)
        if config.rows8 and m > 8:
            raise ValueError(f"a rows8 config serves at most 8 rows of x, got M={m}")
        if config.stream_k:      # the grid's 32-bit unit arithmetic must hold (raises before compiling)
            from .stream_k import stream_k_ctas

            stream_k_ctas(-(-m // config.block_m) * (weight.n_pad // config.block_n),
                          -(-weight.k_pad // config.block_k), config.persistent_ctas)
        kernel = _rc.get_kernel(config)
    if m == 0:
        return out
    xk = _kernel_activations(x, weight)
    ops = _launch_operands(weight, dev)
    if config.split_k > 1 and not config.cluster_split_k:
        tiles = -(-m // config.block_m) * (weight.n_pad // config.block_n)
        ws = torch.empty(config.split_k * m, weight.n_pad, dtype=torch.float32, device=dev)
        cnt = _split_counters(dev, tiles)
    elif config.stream_k:       # two fp32 tile slots per CTA of the grid, a ticket per output tile
        from .stream_k import stream_k_ctas, workspace_rows

        tiles = -(-m // config.block_m) * (weight.n_pad // config.block_n)
        ctas = stream_k_ctas(tiles, -(-xk.shape[1] // config.block_k), config.persistent_ctas)
        ws = torch.empty(workspace_rows(ctas, config.block_m), config.block_n, dtype=torch.float32, device=dev)
        cnt = _split_counters(dev, tiles)
    else:
        ws, cnt = ops[5], ops[6]
    with _on_device(dev):
        # the row-weight operand carries the per-token activation scales of 8-bit activations
        kernel(xk, ops[0], ops[1], ops[2], ops[3], ops[4], bias if bias is not None else _dummy(dev, c_dtype),
               out, ws, cnt, ops[7], ops[7], ops[7], x_scales if act8 else ops[8])
    return out


def _on_device(dev: torch.device):
    """Launch on the tensors' GPU (and that GPU's current stream) when it is not the current device."""
    if dev.type == "cuda" and dev.index is not None and dev.index != torch.cuda.current_device():
        return torch.cuda.device(dev)
    return contextlib.nullcontext()


def _launch_operands(weight: PreparedWeight, dev: torch.device) -> tuple:
    """The weight's launch tensors, with dummies for the operands it does not use (built once per weight)."""
    ops = weight.__dict__.get("_launch")
    if ops is None:
        dummy_i = _dummy(dev, torch.int32, 32)
        ops = (weight.packed,
               weight.group_scales if weight.group_scales is not None else dummy_i.view(1, 32),
               weight.neg_sub if weight.neg_sub is not None else dummy_i.view(1, 32),
               weight.channel_scales if weight.channel_scales is not None else _dummy(dev, torch.float32),
               weight.epilogue_factor,
               _dummy(dev, torch.float32, 64).view(1, 64), _dummy(dev, torch.int32, 8),
               dummy_i, _dummy(dev, torch.float32))
        weight.__dict__["_launch"] = ops
    return ops

def _check_x_scales(x: torch.Tensor, weight: PreparedWeight, x_scales: Optional[torch.Tensor],
                    out_dtype: Optional[torch.dtype]) -> tuple:
    """8/4-bit activations: check `x_scales` ([M] / [M, 1] per token, [M, K / g] per group of g) and `out_dtype`;
    -> (flat contiguous fp32 scales, g; 0 = per token). 16-bit activations: x_scales must be None -> (None, 0)."""
    if weight.a_dtype not in _ACT8:
        if x_scales is not None:
            raise ValueError("x_scales is for 8/4-bit activations; this weight takes float16/bfloat16 activations")
        return None, 0
    if out_dtype is None:
        raise ValueError(f"{weight.a_dtype} activations need out_dtype (torch.float16 or torch.bfloat16)")
    m_rows, k = x.shape
    if (not isinstance(x_scales, torch.Tensor) or x_scales.dtype != torch.float32
            or x_scales.device != x.device or x_scales.dim() not in (1, 2) or x_scales.shape[0] != m_rows
            or (x_scales.dim() == 2 and (x_scales.shape[1] == 0 or k % x_scales.shape[1]))):
        raise ValueError(f"{weight.a_dtype} activations need x_scales: float32 on {x.device}, [M={m_rows}] or "
                         f"[M, 1] per token, or [M, K / group] per group of K")
    x_group = 0
    if x_scales.dim() == 2 and x_scales.shape[1] > 1:
        x_group = k // x_scales.shape[1]
        if x_group < 32 or x_group & (x_group - 1):
            raise ValueError(f"activation scale groups must be powers of two >= 32, got K / {x_scales.shape[1]} "
                             f"= {x_group}")
    return x_scales.reshape(-1).contiguous(), x_group


def _kernel_activations(x: torch.Tensor, weight: PreparedWeight) -> torch.Tensor:
    """x as the kernel reads it: contiguous, K padded with zeros to the weight's padded K; 8/4-bit codes as a
    16-bit view (int4, and e2m1 against e2m1 weights, packed two per byte; e2m1 against other weights one per
    byte in bits 2..5)."""
    act8 = weight.a_dtype in _ACT8
    xk = x if x.is_contiguous() else x.contiguous()
    if weight.k_pad != weight.shape_k:
        if act8:   # zero codes are zero in every 8-bit format
            xk = torch.nn.functional.pad(xk.view(torch.uint8), (0, weight.k_pad - weight.shape_k)).view(x.dtype)
        else:
            xk = torch.nn.functional.pad(xk, (0, weight.k_pad - weight.shape_k))
    if act_bits(weight.a_dtype, weight.b_dtype) == 4:   # 4-bit codes as nibbles, k even in the low one: [M, K/2]
        xu = xk.view(torch.uint8)
        xk = (xu[:, 0::2] & 0xF) | (xu[:, 1::2] << 4)
    elif weight.a_dtype == "float4e2m1":
        # e2m1 codes under other weights: one per byte in bits 2..5, the kind::f8f6f4 MMA's 8-bit container
        xk = (xk.view(torch.uint8) & 0xF) << 2
    if act8:
        xk = xk.view(torch.uint8).view(torch.float16)   # the kernel moves 8/4-bit codes as 16-bit units
    return xk


def _check_moe_inputs(x, weight, sorted_token_ids, expert_ids, num_tokens_post_padded, top_k, topk_weights,
                      mul_topk_weights, is_down, bias, block_m):
    if weight.packed.dim() != 3:
        raise ValueError("moe_gemm needs an MoE weight (prepared from codes [E, N, K])")
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor [tokens, K], got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype != _TORCH[weight.a_dtype]:
        raise TypeError(f"x has dtype {x.dtype}; this weight was prepared for {weight.a_dtype} activations")
    if x.shape[1] != weight.shape_k:
        raise ValueError(f"x has K={x.shape[1]}, the weight has K={weight.shape_k}")
    if x.device.type != "cuda" or x.device != weight.device:
        raise ValueError(f"x ({x.device}) and the weight ({weight.device}) must be on the same CUDA device")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if is_down and x.shape[0] % top_k:
        raise ValueError(f"the down projection reads one row per (token, slot): x must have M * top_k rows, got "
                         f"{x.shape[0]} rows for top_k={top_k}")
    for name, t in (("sorted_token_ids", sorted_token_ids), ("expert_ids", expert_ids),
                    ("num_tokens_post_padded", num_tokens_post_padded)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or t.dim() != 1 or t.device != x.device:
            raise TypeError(f"{name} must be a 1-D int32 tensor on {x.device}")
    if x.shape[0] and (sorted_token_ids.numel() == 0 or num_tokens_post_padded.numel() == 0):
        raise ValueError("sorted_token_ids and num_tokens_post_padded must not be empty when x has rows (use the "
                         "output of moe_align_block_size)")
    if expert_ids.numel() < -(-sorted_token_ids.numel() // block_m):
        raise ValueError(f"expert_ids has {expert_ids.numel()} blocks; {sorted_token_ids.numel()} sorted ids need "
                         f"{-(-sorted_token_ids.numel() // block_m)} blocks of block_m={block_m} (align with the "
                         f"same block_m as the kernel: HummingLayer.moe_block_size(tokens))")
    m_tokens = x.shape[0] // top_k if is_down else x.shape[0]
    if mul_topk_weights:
        if topk_weights is None or topk_weights.shape != (m_tokens, top_k) or topk_weights.device != x.device:
            raise ValueError(f"mul_topk_weights needs topk_weights of shape ({m_tokens}, {top_k}) on {x.device}")
    e = weight.packed.shape[0]
    if bias is not None and (bias.shape != (e, weight.shape_n) or bias.device != x.device):
        raise ValueError(f"bias must have shape ({e}, {weight.shape_n}) on {x.device}, got {tuple(bias.shape)}")
    return m_tokens


#: launch the MoE GEMM over at most (M * top_k) blocks (see `moe_grid_view`); a switch for measurements (H200: one
#: token of a Qwen3-30B-A3B-like up projection 26.5 -> 15.5 us, benchmarks/results/2026-11-30_h200_moe_probe_gated.log)
MOE_GRID_BOUND = True


def moe_grid_view(sorted_token_ids: torch.Tensor, expert_ids: torch.Tensor, routed: int, block_m: int):
    """The prefix of the routing tensors that can hold routed rows: every non-empty expert has at least one of the
    `routed` (= M * top_k) ids and pads to at most one block more, so num_tokens_post_padded <= routed * block_m
    for any routing (vLLM's own allocation bound). The vLLM-sized sorted ids (routed + E (block_m - 1)) are much
    longer when routed < E: one token of a 128-expert top-8 layer has 8 blocks of work in 121 launched. Views,
    no copy; the length depends on the shapes only, so a CUDA graph still replays for any routing."""
    n_blocks = -(-sorted_token_ids.numel() // block_m)
    if routed >= n_blocks:
        return sorted_token_ids, expert_ids
    return sorted_token_ids[:routed * block_m], expert_ids[:routed]


def moe_default_config(x: torch.Tensor, weight: PreparedWeight, m_tokens: int, *, top_k: int, block_m: int,
                       is_down: bool, mul_topk_weights: bool, has_bias: bool, c_name: str, act_name: str,
                       act_fn=None, glu: bool = False) -> GemmConfig:
    """The validated default config of an MoE GEMM call (before any tuned tiling): `default_moe_config` for this
    weight, routing block, token count and GPU, with the call's epilogue."""
    from .tune.heuristics import default_moe_config

    config = default_moe_config(block_m, weight.n_pad, weight.k_pad, a_dtype=weight.a_dtype, b_dtype=weight.b_dtype,
                                c_dtype=c_name, group_size=weight.group_size, arch=device_target(x.device),
                                has_bias=has_bias, top_k=top_k, is_down=is_down, mul_topk_weights=mul_topk_weights,
                                epilogue=act_name != "none", num_tokens=m_tokens,
                                num_experts=weight.packed.shape[0], num_sms=_num_sms(x.device), glu=glu)
    if act_name != "none":
        config = config.with_(activation=act_name, custom_activation=act_fn, glu=glu)
    return config.validate()


def moe_gemm(x: torch.Tensor, weight: PreparedWeight, sorted_token_ids: torch.Tensor, expert_ids: torch.Tensor,
             num_tokens_post_padded: torch.Tensor, *, top_k: int, block_m: int,
             topk_weights: Optional[torch.Tensor] = None, mul_topk_weights: bool = False, is_down: bool = False,
             bias: Optional[torch.Tensor] = None, activation=None, glu: bool = False,
             out_dtype: Optional[torch.dtype] = None, config: Optional[GemmConfig] = None,
             out: Optional[torch.Tensor] = None, x_scales: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The vLLM `fused_moe` contract: out[M, top_k, N'] where row id = t * top_k + k of the sorted ids is
    act(x[id // top_k] @ W[e]^T * scales + bias[e]) (up/gate) or of x[id] (down, `is_down=True`), times
    topk_weights[t, k] when `mul_topk_weights`. The routing tensors come from `moe_align_block_size` with the
    same `block_m` as the kernel. Blocks of expert -1 (another rank's) and padding are skipped: those rows keep
    the value of `out` (zeros when `out` is not given). The grid depends only on the routing tensors' sizes,
    so one CUDA graph replays for any routing. 8/4-bit activations (a weight prepared for them): x holds the
    codes, `x_scales` one fp32 scale per row of x ([rows] or [rows, 1]), `out_dtype` is required. Without
    `config`, a tiling tuned by `humming_cute.autotune_moe` for this problem on this GPU is used if there is one."""
    m_tokens = _check_moe_inputs(x, weight, sorted_token_ids, expert_ids, num_tokens_post_padded, top_k,
                                 topk_weights, mul_topk_weights, is_down, bias, block_m)
    x_scales, x_group = _check_x_scales(x, weight, x_scales, out_dtype)
    if x_group:
        raise NotImplementedError("the MoE GEMM takes one activation scale per row (x_scales [rows] or [rows, 1])")
    act_name, act_fn, glu = resolve(activation, glu)
    if glu and weight.shape_n % 2:
        raise ValueError(f"a GLU activation needs an even N, got N={weight.shape_n}")
    c_dtype = out_dtype or x.dtype
    c_name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(c_dtype)
    if c_name is None:
        raise TypeError(f"out_dtype must be torch.float16 or torch.bfloat16, got {c_dtype}")
    if bias is not None and bias.dtype != c_dtype:
        raise TypeError(f"bias must have the output dtype {c_dtype}, got {bias.dtype}")
    hit = None
    if config is None:
        # the default config of a problem is memoised (a Python heuristic and a validation per call otherwise)
        key = ("moe", m_tokens, id(weight), top_k, block_m, is_down, mul_topk_weights, bias is not None, c_name,
               act_name, act_fn, glu, x.device)
        hit = _DEFAULTS.get(key)
        if hit is None or hit[0]() is not weight:
            config = moe_default_config(x, weight, m_tokens, top_k=top_k, block_m=block_m, is_down=is_down,
                                        mul_topk_weights=mul_topk_weights, has_bias=bias is not None,
                                        c_name=c_name, act_name=act_name, act_fn=act_fn, glu=glu)
            # a tiling measured by `humming_cute.autotune_moe` for this problem on this GPU, if there is one
            # (none for x without rows: nothing is launched)
            from .tune.moe_autotune import tuned_moe_config

            if m_tokens:
                config = tuned_moe_config(config, x, weight, (sorted_token_ids, expert_ids, num_tokens_post_padded),
                                          tokens=m_tokens, arch=device_target(x.device), topk_weights=topk_weights,
                                          bias=bias, x_scales=x_scales)
            if len(_DEFAULTS) > 65536:
                _DEFAULTS.clear()
            hit = _DEFAULTS[key] = [weakref.ref(weight), config, None]     # the kernel joins on the first launch
        config = hit[1]
    elif not config.moe or config.block_m != block_m or config.moe_top_k != top_k or config.moe_down != is_down:
        raise ValueError("config must be an MoE config with the same block_m, top_k and is_down")
    else:
        check_weight_tiles(config, weight.n_pad, weight.k_pad)
    n_out = weight.shape_n // 2 if config.glu else weight.shape_n
    if out is None:
        out = torch.zeros(m_tokens, top_k, n_out, dtype=c_dtype, device=x.device)
    elif (not isinstance(out, torch.Tensor) or out.shape != (m_tokens, top_k, n_out) or out.dtype != c_dtype
          or out.device != x.device or not out.is_contiguous()):
        raise ValueError(f"out must be a contiguous {c_dtype} tensor of shape ({m_tokens}, {top_k}, {n_out}) on "
                         f"{x.device}, got {getattr(out, 'dtype', type(out).__name__)} "
                         f"{tuple(getattr(out, 'shape', ()))} on {getattr(out, 'device', None)}")
    if x.shape[0] == 0:
        return out
    if hit is not None:
        if hit[2] is None:
            hit[2] = _rc.get_kernel(config)
        kernel = hit[2]
    else:
        kernel = _rc.get_kernel(config)      # validates the config first
    if MOE_GRID_BOUND:
        sorted_token_ids, expert_ids = moe_grid_view(sorted_token_ids, expert_ids, m_tokens * top_k, block_m)
    if config.moe_n_major and -(-sorted_token_ids.numel() // block_m) > 65535:
        raise ValueError(f"moe_n_major puts the {-(-sorted_token_ids.numel() // block_m)} routed blocks on the grid's "
                         f"y dimension (at most 65535): use moe_n_major=False")
    xk = _kernel_activations(x, weight)
    dev = x.device
    if config.mainloop == "sm90" and not config.moe_cp_async_rows:
        # the wgmma kernel loads whole activation tiles by TMA: gather x's rows into sorted order first (padding
        # positions take the last row; the epilogue skips them). With moe_cp_async_rows it copies x's rows itself
        from .moe_gather import gather_sorted_rows

        xk = gather_sorted_rows(xk, sorted_token_ids, num_tokens_post_padded, top_k, is_down)
    e = weight.packed.shape[0]
    dummy_s = _dummy(dev, torch.int32, 32 * e).view(e, 1, 32)
    with _on_device(dev):
        kernel(xk, weight.packed,
               weight.group_scales if weight.group_scales is not None else dummy_s,
               weight.neg_sub if weight.neg_sub is not None else dummy_s,
               weight.channel_scales if weight.channel_scales is not None
               else _dummy(dev, torch.float32, 4 * e).view(e, 4),
               weight.epilogue_factor.view(e, 1),
               bias if bias is not None else _dummy(dev, c_dtype, 8 * e).view(e, 8),
               out.view(m_tokens * top_k, n_out),
               # the split-K workspace slot (unused by MoE) carries the per-row activation scales of 8/4-bit x
               x_scales if x_scales is not None else _dummy(dev, torch.float32, 64).view(1, 64),
               _dummy(dev, torch.int32, 8),
               sorted_token_ids, expert_ids, num_tokens_post_padded,
               topk_weights.reshape(-1).float().contiguous() if mul_topk_weights else _dummy(dev, torch.float32))
    return out
