"""The MoE benchmark loop (``--moe``): for each (preset, projection), quantize one random float ``[E, N, K]``
weight, prepare every implementation from it, then for each token count draw a routing, check every output
against its reference and time it.

What is timed, per row:

- humming_cute: ``hc.moe_gemm`` alone on routing tensors made once by ``hc.moe_align_block_size`` with the
  kernel's block size (``tune.heuristics.moe_block_size``, as ``HummingLayer.moe_forward`` picks it), into a
  preallocated output (serving engines keep that buffer). The align is timed apart (``align_ms``) and the sum is
  recorded (``ms_with_align``).
- each peer: its timed call from ``MoePeer.prepare`` (see `peers`), also into a preallocated output and with
  its routing work done outside the timed region.

Checks: every output buffer is filled with NaN before the checked call, so a row an implementation never
writes fails the check. humming_cute is checked against ``quant.reference.reference_moe_gemm`` (fp32); a peer
against the same reference when it holds humming_cute's weight and applies the same routing-weight factor,
else against `routed_reference` of the weight it holds. ``rel_err_vs_float`` compares with the unquantized
float weight. humming_cute failing stops the run; a peer failing is recorded and the run goes on.
"""

from __future__ import annotations

from typing import Optional

from . import core
from .core import OURS, BenchError

#: written into the JSON's config
ROUTING_NOTE = ("uniform: each token's top_k experts are the first top_k of a random permutation of the E experts "
                "(torch.rand(tokens, E).argsort(-1)[:, :top_k], distinct, seeded by --seed and the token count); "
                "topk_weights uniform in [0.05, 1.05) normalised to sum 1 per token")
TIMED_NOTE = ("GEMM only, into a preallocated output; routing tensors built before timing. humming_cute's "
              "moe_align_block_size is timed apart (align_ms; ms_with_align = ms + align_ms). Up projection: "
              "plain GEMM writing all N (= 2 x intermediate) columns, no activation fused by anyone. Down "
              "projection: humming_cute and torch multiply by topk_weights, Humming cannot (no such epilogue)")


def draw_routing(tokens: int, num_experts: int, top_k: int, seed: int, device):
    """(topk_ids int32 [tokens, top_k], topk_weights fp32 [tokens, top_k]): uniform random distinct experts."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    scores = torch.rand(tokens, num_experts, generator=gen, device=device)
    topk_ids = scores.argsort(dim=1)[:, :top_k].to(torch.int32).contiguous()
    w = torch.rand(tokens, top_k, generator=gen, device=device) + 0.05
    return topk_ids, (w / w.sum(dim=1, keepdim=True)).float().contiguous()


def routed_reference(x, w, topk_ids, top_k: int, is_down: bool, topk_weights=None):
    """fp32 ``[tokens, top_k, N]`` written straight from `topk_ids` (no alignment involved):
    ``out[t, j] = x_row @ w[e]^T`` (times ``topk_weights[t, j]`` when given) with ``e = topk_ids[t, j]`` and
    ``x_row = x[t]`` (up) or ``x[t * top_k + j]`` (down). `w`: ``[E, N, K]``, any float dtype, used in fp32."""
    import torch

    from .timing import full_fp32_matmul

    tokens, n = topk_ids.shape[0], w.shape[1]
    flat = topk_ids.reshape(-1).long()
    out = torch.zeros(tokens * top_k, n, dtype=torch.float32, device=x.device)
    with full_fp32_matmul():
        for e in torch.unique(flat).tolist():
            ids = (flat == e).nonzero().squeeze(1)
            rows = ids if is_down else ids // top_k
            y = x.index_select(0, rows).float() @ w[e].float().t()
            if topk_weights is not None:
                y = y * topk_weights.reshape(-1).index_select(0, ids).float()[:, None]
            out[ids] = y
    return out.view(tokens, top_k, n)


def _peer_builders(*, qw, w, w_deq, a_dtype, a_name) -> dict:
    """{name: () -> MoePeer}; each call builds the peer's own copy of the weight (the back-to-back timing rotates
    such copies)."""
    from . import peers as P

    tol = core.tolerance(a_name)
    return {
        "torch": lambda: P.torch_moe_peer(w_deq.to(a_dtype), tol, mul_topk_weights=True),
        "humming": lambda: P.humming_moe_peer(qw, w, w_deq, a_dtype, tol),
    }


def job_rows(job: dict, args, *, device, copy_bw, peak, progress, peer_info, hc_configs) -> list:
    """The rows of one (preset, projection) over ``args.token_list``."""
    import torch

    import humming_cute as hc
    from humming_cute.quant.reference import reference_moe_gemm
    from humming_cute.layouts.weight import ATOM_N
    from humming_cute.ops import device_target
    from humming_cute.tune.heuristics import moe_block144_tile, moe_block_size, moe_uses_wgmma

    from .peers import MoeProblem
    from .run import _rel_err, _report, _rotation, bench_weight, build_peers
    from .timing import bench_ms

    e_count, top_k, n, k, is_down = job["num_experts"], job["top_k"], job["n"], job["k"], job["is_down"]
    label = f"{job['preset']} {job['projection']}"
    a_dtype = getattr(torch, args.a_dtype)
    w, qw, pw, w_deq, fmt = bench_weight((e_count, n, k), args, device)
    builders = _peer_builders(qw=qw, w=w, w_deq=w_deq, a_dtype=a_dtype, a_name=args.a_dtype)
    peers, not_ready = build_peers(args.peer_list, builders, progress, peer_info)
    tol = core.tolerance(args.a_dtype)
    rotation = None      # weight copies for the back-to-back timings, made at the first such token count
    rows = []
    for tokens in args.token_list:
        progress.set_postfix_str(f"{label} tokens={tokens}")
        m_rows = tokens * top_k
        topk_ids, topk_w = draw_routing(tokens, e_count, top_k, (args.seed * 1_000_003 + tokens) % (1 << 62),
                                         device)
        x = torch.randn(m_rows if is_down else tokens, k, device=device, dtype=a_dtype)
        dev = torch.device(device)
        block_m = moe_block_size(tokens, top_k, e_count,
                                 wgmma=dev.type == "cuda" and moe_uses_wgmma(device_target(dev), args.a_dtype),
                                 block144=moe_block144_tile(args.a_dtype, args.b_dtype, -(-n // ATOM_N) * ATOM_N))
        sorted_ids, expert_ids, num_post = hc.moe_align_block_size(topk_ids, block_m, e_count)
        touched = int(torch.unique(topk_ids).numel())
        bytes_ = core.moe_format_bytes(tokens, n, k, top_k=top_k, experts_touched=touched, is_down=is_down, **fmt)
        mem_floor = core.memory_floor_ms(bytes_["total"], copy_bw)
        cmp_floor = core.compute_floor_ms(m_rows, n, k, peak)
        metrics = dict(m=m_rows, n=n, k=k, bytes_=bytes_, memory_floor=mem_floor, compute_floor=cmp_floor)

        # references, each made once per row when first needed: (weight key, routing-weight factor) -> fp32
        refs: dict = {}

        def reference(weight=None, mul: bool = is_down, float_weight: bool = False):
            key = ("float" if float_weight else ("ours" if weight is None else id(weight)), mul)
            if key not in refs:
                if float_weight or weight is not None:
                    refs[key] = routed_reference(x, w if float_weight else weight, topk_ids, top_k, is_down,
                                                 topk_w if mul else None)
                else:
                    refs[key] = reference_moe_gemm(x, qw, sorted_ids, expert_ids, num_post, top_k=top_k,
                                                   block_m=block_m, topk_weights=topk_w, mul_topk_weights=mul,
                                                   is_down=is_down, out_dtype=torch.float32)
            return refs[key]

        # ours: any exception propagates; a wrong result stops the run
        def ours_on(weight):
            """humming_cute's call on `weight` (this routing), into its own NaN-filled output."""
            o = torch.full((tokens, top_k, n), float("nan"), device=device, dtype=a_dtype)
            return lambda: hc.moe_gemm(x, weight, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                                       topk_weights=topk_w, mul_topk_weights=is_down, is_down=is_down, out=o)

        ours = ours_on(pw)

        tuned = None
        if getattr(args, "autotune", 0):     # the winner lands in the tuning cache, which ours() then reads
            tuned = hc.autotune_moe(x, pw, sorted_ids, expert_ids, num_post, top_k=top_k, block_m=block_m,
                                    topk_weights=topk_w, mul_topk_weights=is_down, is_down=is_down,
                                    rep_ms=min(args.reps, 50.0), max_candidates=args.autotune)
        y = ours()
        torch.cuda.synchronize()
        err = _rel_err(y, reference())
        if not err <= tol:
            raise BenchError(f"humming_cute moe_gemm is wrong on {label} (E={e_count}, top_k={top_k}, N={n}, "
                             f"K={k}) at tokens={tokens}, block_m={block_m} ({args.a_dtype} x {args.b_dtype} "
                             f"g{args.group_size}, {args.scale_dtype} scales): relative error {err:.3e} > {tol:.0e}")
        t = bench_ms(ours, args.reps)
        align_ms = bench_ms(lambda: hc.moe_align_block_size(topk_ids, block_m, e_count), args.reps)
        entry = core.ok_entry(t, err, _rel_err(y, reference(float_weight=True)), **metrics)
        entry["block_m"] = block_m
        impls = {OURS: core.with_align(entry, align_ms)}
        hc_configs.setdefault(label, {})[tokens] = repr(tuned) if tuned is not None else \
            _our_config(block_m, pw, args.a_dtype, device, top_k, is_down, tokens)
        del y

        def problem():  # each peer gets its own NaN-filled output buffer
            return MoeProblem(x=x, topk_ids=topk_ids, topk_weights=topk_w, top_k=top_k, num_experts=e_count,
                              is_down=is_down,
                              out=torch.full((tokens, top_k, n), float("nan"), device=device, dtype=a_dtype))

        calls = {OURS: ours}       # what the extra timing rounds call (`--rounds`)
        for name in args.peer_list:
            if name in not_ready:
                impls[name] = not_ready[name]
                continue
            impls[name] = _measure_peer(peers[name], problem, reference, args.reps, label=label, tokens=tokens,
                                        metrics=metrics, keep=calls.setdefault(name, {}))
            if impls[name]["status"] != "ok":
                _report(progress, peer_info, name, impls[name]["reason"])
        if getattr(args, "rounds", 1) > 1:
            from .run import _more_rounds

            impls = _more_rounds(impls, calls, args.rounds, args.reps, **metrics)
        del calls
        row = core.build_moe_row(job, tokens, experts_touched=touched, block_m=block_m, bytes_=bytes_,
                                 memory_floor=mem_floor, compute_floor=cmp_floor, impls=impls, align_ms=align_ms)
        if tokens in args.b2b_list:
            if rotation is None:   # copies sized on the experts this routing touches
                rotation = _rotation(pw, peers, builders, bytes_["weight_total"], device, progress, peer_info)
            times, copies = _back_to_back(rotation, impls, ours_on, problem, tol, args.reps, progress, peer_info)
            row = core.with_back_to_back(row, times, copies)
        rows.append(row)
        del x, refs, sorted_ids, expert_ids, num_post, topk_ids, topk_w
        progress.update(1)
    del peers, pw, qw, w, w_deq, rotation
    torch.cuda.empty_cache()
    return rows


def _back_to_back(rotation, impls, ours_on, make_problem, tol, rep_ms, progress, peer_info):
    """Back-to-back times (`run.time_copies`) of ours over its weight copies (a wrong copy stops the run) and of
    every peer that was timed correctly on this row, each copy prepared for this routing with its own output (a
    failure drops the peer's back-to-back time, with the reason)."""
    import torch

    from .run import _report, time_copies

    fns = [ours_on(p) for p in rotation[OURS]]
    times, copies = {OURS: time_copies(fns, tol, "humming_cute moe_gemm", rep_ms)}, {OURS: len(fns)}
    for name, inst in rotation.items():
        if name == OURS or impls.get(name, {}).get("status") != "ok":
            continue
        try:
            pfns = [p.prepare(make_problem())[0] for p in inst]
            times[name], copies[name] = time_copies(pfns, inst[0].tol, name, rep_ms), len(pfns)
        except Exception as e:  # noqa: BLE001 - a peer never stops the run
            _report(progress, peer_info, name, f"not timed back to back: {type(e).__name__}: {e}")
        torch.cuda.synchronize()
    return times, copies


def _measure_peer(peer, make_problem, reference, rep_ms, *, label, tokens, metrics,
                  keep: Optional[dict] = None) -> dict:
    """Prepare one peer for this routing, check its output against the reference of the weight it holds, then
    time it; any failure (its output buffer's allocation included) becomes a record."""
    import torch

    from .run import _rel_err
    from .timing import bench_ms

    info: dict = {}
    try:
        pb = make_problem()
        call, info = peer.prepare(pb)
        yp = call()
        torch.cuda.synchronize()
        mul = peer.mul_topk_weights and pb.is_down
        ref = reference(peer.ref_weight, mul)
        if tuple(yp.shape) != tuple(ref.shape):
            return core.skipped_entry("wrong", f"output shape {tuple(yp.shape)}, expected {tuple(ref.shape)}",
                                      **info)
        err = _rel_err(yp, ref)
        err_float = _rel_err(yp, reference(mul=mul, float_weight=True))
        del yp
        if not err <= peer.tol:
            return core.skipped_entry("wrong", f"output off its reference on {label} at tokens={tokens}: relative "
                                               f"error {err:.3e} > {peer.tol:.0e}", rel_err=err, **info)
        t = bench_ms(call, rep_ms)
        if keep is not None:
            keep["call"] = call        # (more timing rounds)
    except Exception as e:  # noqa: BLE001 - a peer never stops the run
        return core.skipped_entry("failed", f"{type(e).__name__}: {e}", **info)
    entry = core.ok_entry(t, err, err_float, **metrics)
    entry.update(info)
    return entry


def _our_config(block_m, pw, a_name, device, top_k, is_down, tokens) -> Optional[str]:
    """The kernel config moe_gemm picks (informational; None when it cannot be asked)."""
    try:
        import torch

        from humming_cute.ops import device_target
        from humming_cute.tune.heuristics import default_moe_config

        cfg = default_moe_config(block_m, pw.n_pad, pw.k_pad, a_dtype=pw.a_dtype, b_dtype=pw.b_dtype,
                                 c_dtype=a_name, group_size=pw.group_size, arch=device_target(device), has_bias=False,
                                 top_k=top_k, is_down=is_down, mul_topk_weights=is_down, num_tokens=tokens,
                                 num_experts=pw.packed.shape[0],
                                 num_sms=torch.cuda.get_device_properties(device).multi_processor_count)
        return repr(cfg)
    except Exception:  # noqa: BLE001 - informational only
        return None
