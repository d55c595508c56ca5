"""The peers humming_cute is timed against, each behind one small adapter that returns a `Peer`.

An adapter either returns a ready `Peer` or raises `PeerUnavailable` (with the reason to print) when the peer
does not apply to this format or is not installed; any other exception is reported by the runner as a failure.
A peer never stops the run. Each `Peer` says what weight it really multiplies by (`ref_weight`) and, when it is
given quantized activations, what values they hold (`ref_input`), so that its output is checked against
``ref_input(x_peer) @ ref_weight^T`` before it is timed.

8-bit activation runs (``--a-dtype float8e4m3 / float8e5m2 / int8``): a peer's timed `call` takes activations
quantized per token before timing (`to_input`), like humming_cute's GEMM; `end_to_end`, when a peer has one, is
timed as well on the 16-bit activations, its own quantization included.

MoE peers (``--moe``) are `MoePeer`s: ``prepare(problem)`` does, outside the timed region, whatever the peer needs
for one routing (its own block alignment, index lists) and returns the timed call; the runner checks the call's
output against the routed reference of the weight the peer really holds (`ref_weight`, ``[E, N, K]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..dtypes import parse_dtype
from ..quant.activation import dequantize_activation, quantize_activation
from ..quant.weight import QuantizedWeight, decode_scales
from .core import ACT8_DTYPES, tolerance

__all__ = ["Peer", "PeerUnavailable", "torch_peer", "int4_peer", "scaled_mm_peer", "int_mm_peer", "humming_peer",
           "MoeProblem", "MoePeer", "torch_moe_peer", "humming_moe_peer", "humming_moe_block_m"]


class PeerUnavailable(Exception):
    """The peer does not apply here (format, dtype, shape, card) or is not installed; the message says why."""


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class Peer:
    name: str
    call: Callable[[Any], torch.Tensor]  # timed: call(x_peer) -> [M, N]
    tol: float                           # accepted relative error against the reference below
    # the activations this peer is given, made from our 16-bit x outside the timed region (e.g. a bf16 copy, or
    # per-token codes and scales)
    to_input: Callable[[torch.Tensor], Any] = _identity
    # fp32 [N, K]: the weight it multiplies by; None means humming_cute's own dequantized weight
    ref_weight: Optional[torch.Tensor] = None
    # fp32 [M, K]: the activation values x_peer holds; None means x_peer.float()
    ref_input: Optional[Callable[[Any], torch.Tensor]] = None
    # also timed in 8-bit activation runs: the 16-bit x -> [M, N], the peer's own activation quantization included
    end_to_end: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    notes: list = field(default_factory=list)


def _name(t) -> str:
    return t if isinstance(t, str) else t.name


def _cuda_capability(t: torch.Tensor, what: str) -> tuple:
    """(major, minor) of the GPU that holds `t`; PeerUnavailable where torch has no CUDA GPU."""
    if not torch.cuda.is_available():
        raise PeerUnavailable(f"{what} needs a CUDA GPU; torch {torch.__version__} sees none")
    return tuple(torch.cuda.get_device_capability(t.device))


def _per_token(kind: str, min_rows: int = 0) -> Callable[[torch.Tensor], tuple]:
    """``x -> (codes, fp32 scales [M, 1])``: x quantized per token to `kind` with humming_cute's reference
    quantizer (``quant.activation.quantize_activation``, plain torch ops: the codes humming_cute's GEMM is timed
    on when `kind` is the run's activation type). The codes get at least `min_rows` rows (zero rows appended)."""
    def to_input(x: torch.Tensor) -> tuple:
        q, s = quantize_activation(x, kind, 0)
        if q.shape[0] < min_rows:
            q = torch.cat([q, q.new_zeros(min_rows - q.shape[0], q.shape[1])])
        return q, s
    return to_input


def _dequant_input(kind: str) -> Callable[[tuple], torch.Tensor]:
    """``(codes, scales [M, 1]) -> fp32 [M, K]``: the activation values a peer multiplies (padding rows dropped)."""
    def ref_input(xp: tuple) -> torch.Tensor:
        q, s = xp
        return dequantize_activation(q[:s.shape[0]], s.reshape(-1, 1), kind)
    return ref_input


def _not_act8(name: str, a_name: str) -> None:
    if a_name not in ACT8_DTYPES:
        raise PeerUnavailable(f"{name} multiplies 8-bit activations; this run's are {a_name} (use --a-dtype "
                              f"{' / '.join(ACT8_DTYPES)})")


# ------------------------------------------------------------------------------------------------------------
# torch matmul (cuBLAS) on the dequantized weight
# ------------------------------------------------------------------------------------------------------------

def torch_peer(w16: torch.Tensor, tol: float) -> Peer:
    """``x @ w16^T`` with torch (cuBLAS), `w16` our dequantized weight stored in the activation dtype."""
    return Peer(name="torch", call=lambda x: torch.matmul(x, w16.t()), tol=tol,
                notes=[f"weight: humming_cute's dequantized weight stored as {w16.dtype}"])


# ------------------------------------------------------------------------------------------------------------
# torch's int4 kernel (tinygemm)
# ------------------------------------------------------------------------------------------------------------

_INT4_GROUPS = (32, 64, 128, 256)


def int4_peer(qw: QuantizedWeight, tol_bf16: float, a_name: str = "bfloat16") -> Peer:
    """``torch._weight_int4pack_mm`` on humming_cute's own 4-bit codes and scales.

    The kernel (aten/src/ATen/native/cuda/int4mm.cu) computes ``w = (q - 8) * scale + zero`` per group with a
    bf16 scale and a bf16 *float* zero, from unsigned 4-bit codes ``q``, on bf16 activations, giving bf16.
    Our formats map onto it exactly up to the bf16 rounding of scale and zero:

    - ``int4`` (value ``q - 8``, code = offset binary): ``scale = s``, ``zero = 0``;
    - ``uint4`` (value ``q - z``): ``(q - z) s = (q - 8) s + (8 - z) s``, so ``zero = (8 - z) s``.

    Operands as torch expects them (torch >= 2.5, the layout torchao's tinygemm int4 uses):
    ``_convert_weight_to_int4pack(uint8 [N, K/2], innerKTiles)`` with element ``2j`` in the high nibble of byte
    ``j``; ``qScaleAndZeros`` bf16 ``[K/G, N, 2]`` (``[..., 0]`` scale, ``[..., 1]`` zero); group size 32..256;
    ``K`` a multiple of ``innerKTiles * 16``; ``N`` a multiple of 8. Seen on torch 2.11 (H100): the packing
    needs uint8 (int32 codes are refused), the other nibble order gives a wrong product, and fp16 activations
    are refused (``A.dtype() == at::kBFloat16``). It takes no 8-bit activations (`a_name` is the run's type).
    """
    if a_name in ACT8_DTYPES:
        raise PeerUnavailable(f"the int4 kernel multiplies bf16 activations, not {a_name} ones")
    if not (hasattr(torch, "_weight_int4pack_mm") and hasattr(torch, "_convert_weight_to_int4pack")):
        raise PeerUnavailable(f"torch {torch.__version__} has no _weight_int4pack_mm/_convert_weight_to_int4pack")
    b = _name(qw.b_dtype)
    if b not in ("int4", "uint4"):
        raise PeerUnavailable(f"the int4 kernel takes 4-bit integer weights only, not {b}")
    gs = qw.group_size
    if isinstance(gs, tuple) or gs not in _INT4_GROUPS:
        raise PeerUnavailable(f"the int4 kernel takes group sizes {_INT4_GROUPS} along K only, not {gs!r}")
    if qw.global_scale is not None:
        raise PeerUnavailable("the int4 kernel has no global scale")
    n, k = qw.shape_n, qw.shape_k
    inner_k_tiles = next((t for t in (8, 4, 2) if k % (t * 16) == 0), None)
    if inner_k_tiles is None or n % 8:
        raise PeerUnavailable(f"the int4 kernel needs K % 32 == 0 and N % 8 == 0, got N={n}, K={k}")
    if torch.cuda.get_device_capability(qw.codes.device) < (8, 0):
        raise PeerUnavailable("the int4 kernel needs sm_80 or newer")

    s = decode_scales(qw.scales, qw.scale_dtype)                        # float64 [N, K/G]
    if b == "uint4":
        zero = (8.0 - qw.zero_points.to(torch.float64)) * s
    else:
        zero = torch.zeros_like(s)
    s_bf, z_bf = s.to(torch.bfloat16), zero.to(torch.bfloat16)
    scale_and_zero = torch.stack([s_bf, z_bf], dim=-1).transpose(0, 1).contiguous()  # [K/G, N, 2]
    q = qw.codes.to(torch.int32)                                         # [N, K], 0..15
    w_u8 = ((q[:, 0::2] << 4) | q[:, 1::2]).to(torch.uint8).contiguous()  # [N, K/2]
    w_packed = torch._convert_weight_to_int4pack(w_u8, inner_k_tiles)
    # what the kernel should compute, in fp32 from the bf16 scale and zero it was given
    ref = (q.to(torch.float32) - 8.0) * s_bf.float().repeat_interleave(gs, dim=1) \
        + z_bf.float().repeat_interleave(gs, dim=1)
    notes = [f"innerKTiles={inner_k_tiles}; scales{' and zeros' if b == 'uint4' else ''} rounded to bf16; "
             f"bf16 activations and output (the kernel takes bf16 only)"]
    return Peer(name="int4", call=lambda xb: torch._weight_int4pack_mm(xb, w_packed, gs, scale_and_zero),
                tol=tol_bf16, to_input=lambda x: x.to(torch.bfloat16), ref_weight=ref, notes=notes)


# ------------------------------------------------------------------------------------------------------------
# torch's 8-bit GEMMs: _scaled_mm (fp8) and _int_mm (int8), on the dequantized weight re-quantized per channel
# ------------------------------------------------------------------------------------------------------------

def scaled_mm_peer(w_deq: torch.Tensor, a_name: str) -> Peer:
    """``torch._scaled_mm`` fp8 e4m3 x e4m3 with row-wise scales: the W8A8 FP8 GEMM torch ships.

    Weight: humming_cute's dequantized weight (fp32 ``[N, K]``) quantized per output channel to float8_e4m3fn
    (scale = absmax / 448 per row, fp32 ``[1, N]``); its `ref_weight` is that weight dequantized. Activations:
    per-token e4m3 codes and fp32 scales ``[M, 1]`` made before timing by humming_cute's reference quantizer, so
    a float8e4m3 run gives it the codes humming_cute is timed on (e5m2 and int8 runs: e4m3 codes of the same x).
    The call is ``torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw, out_dtype=torch.float16)``: the second
    operand column-major (``wq.t()`` of a row-major ``[N, K]``), K and N multiples of 16. torch versions whose
    row-wise kernel writes bf16 only are given bf16 and the result is converted to fp16 inside the timed call.
    `end_to_end`: the same quantizer (plain torch ops) then the GEMM, timed together."""
    _not_act8("scaled_mm", a_name)
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        raise PeerUnavailable(f"torch {torch.__version__} has no _scaled_mm / float8_e4m3fn")
    if _cuda_capability(w_deq, "torch._scaled_mm") < (8, 9):
        raise PeerUnavailable("torch._scaled_mm's fp8 GEMM needs sm_89 or newer")
    n, k = w_deq.shape
    if n % 16 or k % 16:
        raise PeerUnavailable(f"torch._scaled_mm needs N and K multiples of 16, got N={n}, K={k}")
    wq, sw = quantize_activation(w_deq, "float8e4m3", 0)   # per output channel: [N, K] codes, [N, 1] scales
    wt, sw_row = wq.t(), sw.reshape(1, n)
    probe = torch.zeros(16, k, dtype=wq.dtype, device=wq.device)
    codes = ("humming_cute's per-token e4m3 codes" if a_name == "float8e4m3" else
             f"per-token e4m3 codes of the same fp16 x (humming_cute multiplies {a_name} ones)")
    out_dtype, notes = torch.float16, [f"weight: humming_cute's dequantized weight re-quantized per output channel "
                                       f"to float8_e4m3fn (absmax / 448); activations: {codes}"]
    try:
        torch._scaled_mm(probe, wt, scale_a=torch.ones(16, 1, device=wq.device), scale_b=sw_row,
                         out_dtype=torch.float16)
    except RuntimeError as e:
        out_dtype = torch.bfloat16
        notes.append(f"row-wise scaling refused fp16 output ({str(e).splitlines()[0][:200]}): bf16 output, "
                     f"converted to fp16 inside the timed call")

    def call(xp: tuple) -> torch.Tensor:
        y = torch._scaled_mm(xp[0], wt, scale_a=xp[1], scale_b=sw_row, out_dtype=out_dtype)
        return y if out_dtype == torch.float16 else y.to(torch.float16)

    to_input = _per_token("float8e4m3")
    return Peer(name="scaled_mm", call=call, tol=tolerance("float16" if out_dtype == torch.float16 else "bfloat16"),
                to_input=to_input, ref_weight=wq.float() * sw, ref_input=_dequant_input("float8e4m3"),
                end_to_end=lambda x: call(to_input(x)), notes=notes)


#: torch._int_mm refuses 16 rows or fewer: fewer rows are padded to this many with zero rows
_INT_MM_MIN_ROWS = 17


def int_mm_peer(w_deq: torch.Tensor, a_name: str) -> Peer:
    """``torch._int_mm`` int8 x int8 -> int32, then the scales applied by torch: the W8A8 int8 GEMM torch ships.

    Weight: humming_cute's dequantized weight quantized per output channel to int8 (scale = absmax / 127);
    its `ref_weight` is that weight dequantized. Activations (int8 runs only): humming_cute's per-token int8 codes,
    made before timing, padded with zero rows to 17 when M <= 16 (``_int_mm`` needs more than 16 rows; the padded
    rows are computed and dropped). The timed call is ``(_int_mm(xq, wq.t())[:M] * sx * sw).to(fp16)``: the
    second operand column-major, K and N multiples of 8; the scales are applied by unfused torch ops.
    `end_to_end`: the same quantizer (plain torch ops) then the call, timed together."""
    if a_name != "int8":
        raise PeerUnavailable(f"torch._int_mm multiplies int8 activations; this run's are {a_name}")
    if not hasattr(torch, "_int_mm"):
        raise PeerUnavailable(f"torch {torch.__version__} has no _int_mm")
    if _cuda_capability(w_deq, "torch._int_mm") < (8, 0):
        raise PeerUnavailable("torch._int_mm runs here from sm_80 on")
    n, k = w_deq.shape
    if n % 8 or k % 8:
        raise PeerUnavailable(f"torch._int_mm needs N and K multiples of 8, got N={n}, K={k}")
    wq, sw = quantize_activation(w_deq, "int8", 0)   # per output channel: [N, K] codes, [N, 1] scales
    wt, sw_row = wq.t(), sw.reshape(1, n)

    def call(xp: tuple) -> torch.Tensor:
        q, s = xp
        return (torch._int_mm(q, wt)[:s.shape[0]] * s * sw_row).to(torch.float16)

    to_input = _per_token("int8", _INT_MM_MIN_ROWS)
    notes = ["weight: humming_cute's dequantized weight re-quantized per output channel to int8 (absmax / 127); "
             f"activations: humming_cute's per-token int8 codes (M <= 16 padded to {_INT_MM_MIN_ROWS} rows); int32 "
             "result scaled and cast to fp16 by torch ops"]
    return Peer(name="int_mm", call=call, tol=tolerance("float16"), to_input=to_input, ref_weight=wq.float() * sw,
                ref_input=_dequant_input("int8"), end_to_end=lambda x: call(to_input(x)), notes=notes)


# ------------------------------------------------------------------------------------------------------------
# the reference Humming package (humming-kernels, import name `humming`)
# ------------------------------------------------------------------------------------------------------------

#: our scale dtype name -> Humming's (humming/dtypes.py spells UE8M0 "float8e8m0"). 16-bit scales are not named:
#: Humming keeps them in the layer's torch dtype (schema/humming.py, HummingWeightSchema.get_tensors_attrs).
_HUMMING_FP8_SCALES = {"float8e4m3": "float8e4m3", "float8e5m2": "float8e5m2", "ue8m0": "float8e8m0"}


def _same_weight(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= 1e-6 * b.abs().max())


def humming_peer(qw: QuantizedWeight, w_float: torch.Tensor, w_ours: torch.Tensor, a_dtype: torch.dtype,
                 tol: float, input_dtype: Optional[str] = None) -> Peer:
    """A `humming.layer.HummingLayer` holding the same quantized weight as humming_cute where it can.

    Calls (humming-kernels 0.1.19; files of the installed package):

    1. ``HummingLayer(shape_n=N, shape_k=K, weight_config={...}, torch_dtype=a_dtype).cuda()`` (layer.py,
       class HummingLayer; README's usage example moves it to the GPU with ``.cuda()``). weight_config keys are
       the fields of ``HummingWeightSchema`` (schema/humming.py): ``b_dtype``, ``weight_scale_group_size``
       (0 = per channel), ``has_zero_point``, ``bs_dtype`` (scale dtype). Its ``__post_init__`` turns a signed
       ``intN`` into ``uintN`` without zero point, which utils/weight.py ``dequantize_weight`` reads as
       ``q - 2^(N-1)``: the same offset-binary codes as ours.
    2. Same weight: the tensors Humming's own quantizer would produce (schema/humming.py
       ``HummingWeightSchema.quant_tensor`` -> utils/weight.py ``quantize_weight(pack=True)``), made from OUR codes
       and scales: ``weight`` = ``humming.ops.pack_weight(codes int32 [N, K], bits)`` -> int32 [N, K*bits/32];
       ``weight_scale`` [N, K/G] (or [N, 1]); ``zero_point`` = pack_weight of the transposed zero points,
       transposed back -> int32 [N*bits/32, K/G]. Loaded with ``layer.load_from_tensors(tensors)`` (layer.py,
       a ``load_state_dict(strict=False)``), then checked: ``layer.weight_schema.dequant_tensors(params)``
       (schema/humming.py) must equal humming_cute's dequantized weight.
    3. Otherwise (scale dtype Humming would round, a layout it rejects, a mismatch): ``layer.
       load_from_unquantized(w_float)`` (layer.py), Humming's own quantization of the same float weight; its
       reference is then its own ``dequant_tensors`` of what it loaded.
    4. ``layer.transform()`` (layer.py: repacks into the kernel layout), then ``layer(x)`` (``forward`` ->
       forward.py ``humming_forward`` -> ops/gemm.py ``humming_gemm``, which picks the kernel config by its
       heuristics (tune/) for each M and JIT-compiles it on first use).

    8-bit activations (`input_dtype` float8e4m3 / float8e5m2 / int8; `a_dtype` and `tol` are then unused):

    5. The layer gets ``input_config={"dtype": input_dtype}`` (layer.py ``HummingLayer.__post_init__`` ->
       schema/humming.py ``HummingInputSchema``, ``dtype`` an alias of ``a_dtype``; no ``input_quant_mode``, so
       config/config.py ``LayerConfig`` picks ``DynamicToken``: one fp32 scale per token, ``as_dtype`` float32).
       Its ``torch_dtype`` (the output dtype, ``c_dtype``) is fp16, or bf16 for e5m2: config/mma.py
       ``get_dtype_compatibility_error`` refuses float8e5m2 activations with an fp16 output. The pair is first
       checked with ``layer.input_schema.is_compatible_with(layer.weight_schema, torch_dtype)`` (schema/humming.py
       ``is_humming_schema_compatible``); where Humming refuses it, the peer is unavailable.
    6. Timed call: ``layer(codes, input_scale=scales)`` on humming_cute's own per-token codes and fp32 scales
       ``[M, 1]`` (forward.py ``humming_forward``: an input that is not fp16/bf16/fp32 is taken as already
       quantized and goes straight to ``ops.humming_gemm`` with ``input_scale``; csrc/launcher/tensor.h
       ``check_tensor_as`` wants fp32 ``[M, 1]`` per token). The scales sit in a buffer of ``round_up(M, 4)``
       floats, as Humming's own quantizer allocates them (ops/input.py ``_prepare_process_input_op``).
    7. `end_to_end`: ``layer(x16)``: ``humming_forward`` quantizes the 16-bit x with its process_input kernel
       (forward.py ``may_process_input`` -> ops/input.py ``process_input``; scale = max(absmax / qmax, 1e-30),
       include/humming/kernel/process_input/quantization.cuh ``quant_group``), then runs the same GEMM.
    8. int8 activations with group weight scales: where ``LayerConfig.use_int_weight_scale`` is on, Humming's
       ``transform()`` rounds the group scales to integers of max|s| / 1024 (transform.py
       ``process_int_weight_scale``), a weight that differs from the loaded one by up to 2^-11 of the largest
       scale; it is still checked against the loaded weight, within the tolerance (noted when it happens).
    """
    if input_dtype is None:
        layer, ref, notes = _humming_layer(qw, w_float, w_ours, a_dtype)
        return Peer(name="humming", call=lambda x: layer(x), tol=tol, ref_weight=ref, notes=notes)
    out_dtype = torch.bfloat16 if input_dtype == "float8e5m2" else torch.float16
    layer, ref, notes = _humming_layer(qw, w_float, w_ours, out_dtype, input_dtype)

    def to_input(x: torch.Tensor) -> tuple:
        q, s = quantize_activation(x, input_dtype, 0)
        m = s.shape[0]
        buf = torch.zeros(-(-m // 4) * 4, dtype=torch.float32, device=s.device)
        buf[:m] = s.reshape(-1)
        return q, buf[:m].view(m, 1)

    notes.append(f"timed on humming_cute's per-token {input_dtype} codes and fp32 scales (layer(codes, "
                 f"input_scale=scales)); end-to-end: layer(x) with Humming's own activation quantization; "
                 f"{str(out_dtype).removeprefix('torch.')} output")
    return Peer(name="humming", call=lambda xp: layer(xp[0], input_scale=xp[1]),
                # its fp8 GEMM accumulates like ours (fast fp8 wgmma accumulation): the same tolerance as ours
                tol=max(tolerance(input_dtype), tolerance(str(out_dtype).removeprefix("torch."))), to_input=to_input,
                ref_weight=ref, ref_input=_dequant_input(input_dtype), end_to_end=lambda x: layer(x), notes=notes)


def _humming_layer(qw: QuantizedWeight, w_float: torch.Tensor, w_ours: torch.Tensor, a_dtype: torch.dtype,
                   input_dtype: Optional[str] = None):
    """Steps 1-4 of `humming_peer`'s docstring for a dense ``[N, K]`` or an MoE ``[E, N, K]`` weight (MoE:
    ``HummingLayer(..., num_experts=E)``, every tensor with a leading expert dim), and steps 5 and 8 for 8-bit
    activations (`input_dtype`; `a_dtype` is then the layer's output dtype). -> (transformed layer, the fp32
    weight it multiplies by or None when it is humming_cute's own, notes)."""
    try:
        import humming  # noqa: F401  (registers humming.ops)
        from humming import ops as hops
        from humming.layer import HummingLayer
    except ImportError as e:
        raise PeerUnavailable(f"the Humming package (humming-kernels) is not importable: {e}") from e

    b, scale = _name(qw.b_dtype), _name(qw.scale_dtype)
    gs = qw.group_size
    if isinstance(gs, tuple):
        raise PeerUnavailable(f"2-D block scales {gs} are not mapped onto Humming in this adapter")
    if qw.global_scale is not None:
        raise PeerUnavailable("global scales are not mapped onto Humming in this adapter")
    n, k = qw.shape_n, qw.shape_k
    num_experts = qw.num_experts  # None for a dense weight
    bits = parse_dtype(b).bits
    is_uint = b.startswith("uint")
    a_name = {torch.float16: "float16", torch.bfloat16: "bfloat16"}[a_dtype]

    config = {"b_dtype": b, "weight_scale_group_size": gs, "has_zero_point": is_uint}
    if scale in _HUMMING_FP8_SCALES:
        config["bs_dtype"] = _HUMMING_FP8_SCALES[scale]
    extra = {} if num_experts is None else {"num_experts": num_experts}
    if input_dtype is not None:
        extra["input_config"] = {"dtype": input_dtype}
    layer = HummingLayer(shape_n=n, shape_k=k, weight_config=dict(config), torch_dtype=a_dtype, **extra).cuda()
    notes = [f"weight_config={config}" + ("" if num_experts is None else f", num_experts={num_experts}")
             + ("" if input_dtype is None else f", input_config={{'dtype': '{input_dtype}'}}, torch_dtype={a_name}")]
    if input_dtype is not None and not layer.input_schema.is_compatible_with(layer.weight_schema, a_dtype):
        raise PeerUnavailable(f"Humming refuses {input_dtype} activations with weight_config={config} and "
                              f"{a_name} output on this card (schema/humming.py is_humming_schema_compatible)")

    if scale in _HUMMING_FP8_SCALES or scale == a_name:
        why_not = _load_same_weight(layer, hops, qw, bits, is_uint, w_ours)
    else:
        why_not = f"Humming keeps {scale} scales in {a_name}"
    if why_not is None:
        notes.append("same codes and scales as humming_cute (Humming's dequantized weight is identical)")
        ref = None  # checked against humming_cute's own reference
    else:
        notes.append(f"{why_not}: Humming quantized the same float weight itself (load_from_unquantized)")
        layer.load_from_unquantized(w_float)
        ref = _loaded_weight(layer)
    layer.transform()
    if input_dtype is not None and getattr(layer.humming_config, "use_int_weight_scale", False):
        notes.append("transform() turned the group scales into integer multiples of max|s| / 1024 "
                     "(LayerConfig.use_int_weight_scale): Humming's weight differs from the loaded one by up to "
                     "2^-11 of the largest scale; checked against the loaded weight")
    return layer, ref, notes


def _loaded_weight(layer) -> torch.Tensor:
    """fp32 [N, K] (MoE: [E, N, K]): Humming's own dequantization of the tensors loaded in `layer` (before
    transform())."""
    params = {name: p.data for name, p in layer.named_parameters()}
    return layer.weight_schema.dequant_tensors(params).float()


def _load_same_weight(layer, hops, qw: QuantizedWeight, bits: int, is_uint: bool,
                      w_ours: torch.Tensor) -> Optional[str]:
    """Load humming_cute's codes, scales and zero points into `layer`; None when Humming then holds exactly our
    weight, else the reason it does not."""
    try:
        # dense [N, K] or MoE [E, N, K] (every tensor gets the leading expert dim: schema/base.py
        # may_add_expert_dim; pack_weight packs the last dim of any shape: ops/weight.py)
        codes = qw.codes.to(torch.int32).contiguous()                                # [.., N, K]
        tensors = {"weight": hops.pack_weight(codes, bits),                           # [.., N, K*bits/32]
                   "weight_scale": qw.scales.contiguous()}                            # [.., N, K/G] or [.., N, 1]
        if is_uint:
            zt = qw.zero_points.to(torch.int32).transpose(-1, -2).contiguous()        # [.., K/G, N]
            tensors["zero_point"] = hops.pack_weight(zt, bits).transpose(-1, -2).contiguous()  # [.., N*bits/32, K/G]
        layer.load_from_tensors(tensors)
        w_h = _loaded_weight(layer)
    except Exception as e:  # noqa: BLE001 - any failure here falls back to Humming's own quantization
        return f"loading humming_cute's codes failed ({type(e).__name__}: {e})"
    if not _same_weight(w_h, w_ours):
        return "humming_cute's codes loaded into Humming dequantize to a different weight"
    return None


# ------------------------------------------------------------------------------------------------------------
# MoE peers
# ------------------------------------------------------------------------------------------------------------

@dataclass
class MoeProblem:
    """One routing of one MoE layer, built by the runner; every implementation gets the same one."""
    x: torch.Tensor              # up: [tokens, K]; down: [tokens * top_k, K] (row id = t * top_k + k)
    topk_ids: torch.Tensor       # int32 [tokens, top_k], distinct experts per token
    topk_weights: torch.Tensor   # fp32 [tokens, top_k]
    top_k: int
    num_experts: int
    is_down: bool
    out: torch.Tensor            # [tokens, top_k, N], this peer's output buffer (allocated outside the timing)

    @property
    def tokens(self) -> int:
        return self.topk_ids.shape[0]


@dataclass
class MoePeer:
    name: str
    # prepare(problem) -> (call, info): everything per routing outside the timed region; call() -> [tokens,top_k,N]
    prepare: Callable[[MoeProblem], tuple]
    tol: float
    mul_topk_weights: bool                    # whether the down projection's output is scaled by topk_weights
    ref_weight: Optional[torch.Tensor] = None  # fp32 [E, N, K]; None: humming_cute's own dequantized weight
    notes: list = field(default_factory=list)


def torch_moe_peer(w16: torch.Tensor, tol: float, mul_topk_weights: bool) -> MoePeer:
    """The naive baseline: a Python loop over the experts that got tokens, each doing a gather of its rows, one
    torch.matmul (cuBLAS) on humming_cute's dequantized weight stored in the activation dtype (`w16`,
    ``[E, N, K]``), the routing-weight multiply (down projection) and a scatter into the output.

    The grouping of the flat ids by expert (sort, per-expert counts: a host sync) is done once per routing in
    ``prepare``, outside the timed region; the timed call is the loop alone."""
    notes = [f"weight: humming_cute's dequantized weight stored as {w16.dtype}; ids grouped by expert outside "
             f"the timed call; one launch sequence (index_select, matmul{', mul' if mul_topk_weights else ''}, "
             f"index_copy_) per expert hit"]

    def prepare(pb: MoeProblem):
        flat = pb.topk_ids.reshape(-1).long()
        order = torch.sort(flat, stable=True).indices                       # flat ids grouped by expert
        counts = torch.bincount(flat, minlength=pb.num_experts).tolist()    # host sync: not timed
        groups, start = [], 0
        for e, c in enumerate(counts):
            if c:
                ids = order[start:start + c]
                groups.append((e, ids, ids if pb.is_down else ids // pb.top_k))
            start += c
        x, out2d = pb.x, pb.out.view(-1, pb.out.shape[-1])
        scale = pb.topk_weights.reshape(-1).to(x.dtype)
        mul = mul_topk_weights and pb.is_down

        def call():
            for e, ids, rows in groups:
                y = torch.matmul(x.index_select(0, rows), w16[e].t())
                if mul:
                    y.mul_(scale.index_select(0, ids)[:, None])
                out2d.index_copy_(0, ids, y)
            return pb.out

        return call, dict(experts_in_loop=len(groups))

    return MoePeer(name="torch", prepare=prepare, tol=tol, mul_topk_weights=mul_topk_weights, notes=notes)


def humming_moe_block_m(layer, rows: int) -> int:
    """The M block of the kernel that Humming's default (heuristic) path runs for `rows` routed rows.

    ``HummingLayer.forward`` with no tuning_config reaches kernel/humming.py ``HummingKernel._resolve_configs``,
    which calls ``humming.tune.get_heuristics_config(layer_config, gemm_type="indexed", device=...)`` (no
    shape_m: a list of ``[lo, hi, config]`` intervals, tune/base.py ``DeviceHeuristics.get_configs``); the
    launcher then runs the interval holding ``valid_shape_m = inputs.size(0) * top_k`` (csrc/launcher/
    launcher.cpp), i.e. the routed rows. The routing must be aligned to that config's ``block_shape[0]``, as
    Humming's own tests do (testing/runner.py ``_run_prepared_kernels``: ``moe_block_size =
    kernel["block_shape"][0]``, then testing/data.py ``generate_moe_tensors``)."""
    from humming.tune import get_heuristics_config

    from .core import select_interval

    device = next(p.device for p in layer.parameters() if p.is_cuda)
    intervals = get_heuristics_config(layer.humming_config, gemm_type="indexed", device=device)
    return int(select_interval(intervals, rows)[2]["block_shape"][0])


def humming_moe_peer(qw: QuantizedWeight, w_float: torch.Tensor, w_ours: torch.Tensor, a_dtype: torch.dtype,
                     tol: float) -> MoePeer:
    """Humming's MoE path: its indexed GEMM (vLLM's sorted_token_ids / expert_ids / num_tokens_post_padded
    contract) through ``HummingLayer(num_experts=E)``, holding the same codes and scales as humming_cute where it
    can (see `humming_peer`; here every tensor has the leading expert dim).

    Calls (humming-kernels 0.1.19; files of the installed package):

    1. The layer: ``HummingLayer(shape_n=N, shape_k=K, weight_config=..., torch_dtype=a_dtype,
       num_experts=E).cuda()`` (layer.py); ``load_from_tensors`` of our packed codes, scales and zero points
       (shapes from schema/humming.py ``get_tensors_attrs`` + schema/base.py ``may_add_expert_dim``: weight
       ``[E, N, K*bits/32]``, weight_scale ``[E, N, K/G]``, zero_point ``[E, N*bits/32, K/G]``), checked with
       ``weight_schema.dequant_tensors`` (utils/weight.py ``dequantize_weight`` handles the expert dim); else
       ``load_from_unquantized(w [E, N, K])``; then ``transform()``.
    2. The routing: Humming ships no GPU align kernel (testing/data.py ``generate_moe_tensors`` builds the
       index tensors with a Python loop, "TODO: moe_align_block_size cuda kernel"); its layout is vLLM's:
       experts ascending, flat ids ``t * top_k + k`` ascending within an expert, each run padded to the block
       with the pad value ``M * top_k``, one expert id per block. humming_cute's ``moe_align_block_size``
       produces exactly that layout, so it builds them here, with Humming's own block size
       (`humming_moe_block_m`), outside the timed region (like ours: both GEMMs are timed without the align).
    3. The call: ``layer(x, outputs=out [M*top_k, N], sorted_ids=..., expert_ids=..., num_tokens_padded=...,
       top_k=..., compute_config={"gemm_type": "indexed"})`` (layer.py ``HummingLayer.forward`` -> forward.py
       ``humming_forward`` -> ops/gemm.py ``humming_gemm``; ``gemm_type`` is a ``ComputeConfig`` field,
       config/config.py, required for MoE: kernel/humming.py "gemm_type must be specify for MoE GEMM"). The
       kernel reads input row ``sorted_id / top_k`` (include/humming/scheduler.cuh ``fetch_moe_index_block``)
       and writes output row ``sorted_id``; rows ``>= inputs.size(0) * top_k`` are padding
       (include/humming/epilogue/gmem_writer.cuh ``output_shape_m``). Up projection: x ``[M, K]``,
       ``top_k=top_k``. Down projection: x ``[M*top_k, K]`` with ``top_k=1``, so row ``id`` is read and the pad
       value ``M*top_k`` is still past the end: vLLM's own trick for its second GEMM.
    4. Humming has no routed-weight epilogue (nothing multiplies by topk_weights), so on the down projection its
       output is checked without that factor, while humming_cute and the torch baseline apply it: Humming does
       a little less work there (one multiply per output element).
    """
    from ..moe_align import moe_align_block_size

    if qw.num_experts is None:
        raise ValueError("humming_moe_peer needs an MoE weight [E, N, K]")
    layer, ref, notes = _humming_layer(qw, w_float, w_ours, a_dtype)
    notes.append("compute_config={'gemm_type': 'indexed'}; default heuristic kernel per routed-row count; routing "
                 "aligned to its block_shape[0] with humming_cute's moe_align_block_size (not timed); down "
                 "projection: top_k=1 on the routed rows, no topk_weights multiply (Humming has none)")
    compute_config = {"gemm_type": "indexed"}
    n = qw.shape_n

    def prepare(pb: MoeProblem):
        rows = pb.tokens * pb.top_k
        block_m = humming_moe_block_m(layer, rows)
        sorted_ids, expert_ids, num_post = moe_align_block_size(pb.topk_ids, block_m, pb.num_experts)
        call_top_k = 1 if pb.is_down else pb.top_k
        out2d = pb.out.view(rows, n)
        x = pb.x

        def call():
            layer(x, outputs=out2d, sorted_ids=sorted_ids, expert_ids=expert_ids, num_tokens_padded=num_post,
                  top_k=call_top_k, compute_config=compute_config)
            return pb.out

        return call, dict(block_m=block_m)

    return MoePeer(name="humming", prepare=prepare, tol=tol, mul_topk_weights=False, ref_weight=ref, notes=notes)
