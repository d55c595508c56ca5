"""The benchmark loop: for each shape, quantize one random float weight, prepare every implementation from it,
then for each M check every output against its reference and time it. ``--moe`` runs `moe.job_rows` instead
(same measurements, table, JSON and PNG machinery).

8-bit activations (``--a-dtype float8e4m3 / float8e5m2 / int8``): the fp16 x of each row is quantized per token
(``quant.activation.quantize_activation``) before timing; humming_cute's GEMM is timed on those codes and checked
against ``reference_gemm`` of the same codes; ``hc.quantize_input`` is timed apart (and must give the same codes);
peers are checked against the product of the activations and weight they really multiply (`peers.Peer`).

humming_cute failing (an exception, or a result outside the tolerance) stops the run with an error; a peer
failing is recorded (JSON and stdout) and the run goes on.
"""

from __future__ import annotations

import sys
from typing import Optional

from . import core
from .core import OURS, BenchError


def _rel_err(y, ref) -> float:
    """Relative Frobenius error of `y` against the fp32 `ref` (NaN in y gives NaN, which fails every check)."""
    return ((y.float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


#: written into the JSON's config of an 8-bit activation run
ACT8_NOTE = ("activations: fp16 x quantized per token (fp32 scales) by humming_cute.quant.activation."
             "quantize_activation before timing; ms = hc.gemm on those codes, fp16 output; quant_ms = "
             "hc.quantize_input timed apart; ms_end_to_end = ms + quant_ms. Peers: torch = fp16 x @ the dequantized "
             "weight in fp16; scaled_mm / int_mm / humming timed on per-token codes made before timing, and "
             "end-to-end (their own quantization of the fp16 x included) as ms_end_to_end")


def _peer_builders(*, qw, w, w_deq, a_dtype, a_name) -> dict:
    """{name: () -> Peer}; each call builds the peer's own copy of the weight (its own storage: the back-to-back
    timing rotates such copies). `a_dtype` is the torch dtype of the 16-bit activations (fp16 in an 8-bit run),
    `a_name` the run's type."""
    from . import peers as P

    act8 = core.is_act8(a_name)
    x_name = "float16" if act8 else a_name
    return {
        "torch": lambda: P.torch_peer(w_deq.to(a_dtype), core.tolerance(x_name)),
        "int4": lambda: P.int4_peer(qw, core.tolerance("bfloat16"), a_name),
        "scaled_mm": lambda: P.scaled_mm_peer(w_deq, a_name),
        "int_mm": lambda: P.int_mm_peer(w_deq, a_name),
        "humming": lambda: P.humming_peer(qw, w, w_deq, a_dtype, core.tolerance(x_name),
                                          a_name if act8 else None),
    }


def build_peers(names, builders, progress, peer_info):
    """Build each named peer; those that cannot run are recorded (skipped / failed, with the reason), never
    raised: a peer never stops the run."""
    from . import peers as P

    ready, not_ready = {}, {}
    for name in names:
        try:
            peer = builders[name]()
        except P.PeerUnavailable as e:
            not_ready[name] = core.skipped_entry("skipped", str(e))
        except Exception as e:  # noqa: BLE001 - a peer never stops the run
            not_ready[name] = core.skipped_entry("failed", f"preparing it raised {type(e).__name__}: {e}")
        else:
            ready[name] = peer
            for note in peer.notes:
                if note not in peer_info[name]["notes"]:
                    peer_info[name]["notes"].append(note)
        if name in not_ready:
            _report(progress, peer_info, name, not_ready[name]["reason"])
    return ready, not_ready


def _report(progress, peer_info, name: str, reason: str) -> None:
    """Print a peer's reason for not being timed, once per distinct reason, and keep it for the JSON."""
    if reason not in peer_info[name]["reasons"]:
        peer_info[name]["reasons"].append(reason)
        progress.write(f"[{name}] not timed: {reason}")


def bench_weight(shape: tuple, args, device):
    """The timed weight of one bench job ([N, K] or [E, N, K], seeded): float, quantized, prepared, dequantized
    (fp32: what every correct implementation multiplies by) and its byte-count format."""
    import torch

    import humming_cute as hc

    torch.manual_seed(args.seed)
    w = torch.randn(*shape, device=device, dtype=torch.float32)
    qw = hc.quantize_weight(w, args.b_dtype, args.group_size, args.scale_dtype)
    pw = hc.prepare_weight(qw, args.a_dtype)
    fmt = dict(b_bits=qw.b_dtype.bits, group_size=args.group_size, scale_bits=qw.scale_dtype.bits,
               zero_point=qw.zero_points is not None, a_bytes=1 if core.is_act8(args.a_dtype) else 2, c_bytes=2)
    return w, qw, pw, hc.dequantize_weight(qw), fmt


def _shape_rows(n, k, args, *, device, copy_bw, peak, progress, peer_info, hc_configs):
    import torch

    import humming_cute as hc
    from humming_cute.quant.activation import quantize_activation
    from humming_cute.quant.reference import reference_gemm

    from . import timing
    from .timing import bench_ms, full_fp32_matmul

    act8 = core.is_act8(args.a_dtype)
    a_dtype = torch.float16 if act8 else getattr(torch, args.a_dtype)  # the 16-bit activations of each row
    w, qw, pw, w_deq, fmt = bench_weight((n, k), args, device)
    builders = _peer_builders(qw=qw, w=w, w_deq=w_deq, a_dtype=a_dtype, a_name=args.a_dtype)
    peers, not_ready = build_peers(args.peer_list, builders, progress, peer_info)
    rotation = None      # weight copies for the back-to-back timings, made at the first such M
    tol = core.tolerance(args.a_dtype)
    rows = []
    for m in args.m_list:
        progress.set_postfix_str(f"{n}x{k} M={m}")
        bytes_ = core.format_bytes(m, n, k, **fmt)
        mem_floor = core.memory_floor_ms(bytes_["total"], copy_bw)
        cmp_floor = core.compute_floor_ms(m, n, k, peak)
        x = torch.randn(m, k, device=device, dtype=a_dtype)
        with full_fp32_matmul():
            y_ref = x.float() @ w_deq.t()  # the reference of a peer that multiplies x as it is by our weight
            y_float = x.float() @ w.t()
        if act8:  # per-token codes made outside the timed region; the reference multiplies the same codes
            xq, xs = quantize_activation(x, args.a_dtype, 0)
            y_ours_ref = reference_gemm(xq, qw, x_scales=xs, a_dtype=args.a_dtype, out_dtype=torch.float32)

            def ours():
                return hc.gemm(xq, pw, x_scales=xs, out_dtype=torch.float16)
        else:
            y_ours_ref = y_ref

            def ours():
                return hc.gemm(x, pw)

        tuned = None
        if getattr(args, "autotune", 0):
            tuned = hc.autotune(xq if act8 else x, pw, x_scales=xs if act8 else None,
                                out_dtype=torch.float16 if act8 else None, rep_ms=min(args.reps, 50.0),
                                max_candidates=args.autotune)
        # ours: any exception propagates; a wrong result stops the run
        y = ours()
        torch.cuda.synchronize()
        err = _rel_err(y, y_ours_ref)
        if not err <= tol:
            raise BenchError(f"humming_cute gemm is wrong at M={m} N={n} K={k} ({args.a_dtype} x {args.b_dtype} "
                             f"g{args.group_size}, {args.scale_dtype} scales): relative error {err:.3e} > {tol:.0e}")
        t = bench_ms(ours, args.reps)
        entry = core.ok_entry(t, err, _rel_err(y, y_float), m=m, n=n, k=k, bytes_=bytes_, memory_floor=mem_floor,
                              compute_floor=cmp_floor)
        entry["timed_as"] = timing.last_mode
        if act8:
            entry = core.with_quantize(entry, _quantize_ms(x, xq, xs, args, m=m, k=k))
            del y_ours_ref
        impls = {OURS: entry}
        hc_configs.setdefault(f"{n}x{k}", {})[m] = repr(tuned) if tuned is not None else \
            _our_config(m, pw, args.a_dtype, device)

        calls = {OURS: ours}       # what the extra timing rounds call (`--rounds`)
        for name in args.peer_list:
            if name in not_ready:
                impls[name] = not_ready[name]
                continue
            impls[name] = _measure_peer(peers[name], x, y_ref, y_float, w_deq, args.reps, m=m, n=n, k=k,
                                        bytes_=bytes_, memory_floor=mem_floor, compute_floor=cmp_floor,
                                        end_to_end=act8, keep=calls.setdefault(name, {}))
            if impls[name]["status"] != "ok":
                _report(progress, peer_info, name, impls[name]["reason"])
        if getattr(args, "rounds", 1) > 1:
            impls = _more_rounds(impls, calls, args.rounds, args.reps, m=m, n=n, k=k, bytes_=bytes_,
                                 memory_floor=mem_floor, compute_floor=cmp_floor)
        del calls
        row = core.build_row(m, n, k, bytes_, mem_floor, cmp_floor, impls)
        if m in args.b2b_list:
            if rotation is None:
                rotation = _rotation(pw, peers, builders, bytes_["weight_total"], device, progress, peer_info)
            times, copies = _back_to_back(rotation, impls, x, (xq, xs) if act8 else None, tol, args.reps,
                                          progress, peer_info, between=getattr(args, "back_to_back_between", False))
            row = core.with_back_to_back(row, times, copies)
        rows.append(row)
        del x, y_ref, y_float, y
        if act8:
            del xq, xs
        progress.update(1)
    del peers, pw, qw, w, w_deq, rotation
    torch.cuda.empty_cache()
    return rows


def _clone_prepared(pw):
    """A copy of a PreparedWeight with its own storage for every tensor."""
    import dataclasses

    import torch

    return dataclasses.replace(pw, **{f.name: getattr(pw, f.name).clone() for f in dataclasses.fields(pw)
                                      if isinstance(getattr(pw, f.name), torch.Tensor)})


def _rotation(pw, peers, builders, weight_bytes, device, progress, peer_info) -> dict:
    """Weight copies for the back-to-back timings: {name: [instance, ...]}, ours as PreparedWeights, each peer's
    built again by its builder (its own storage); as many as `rotation_copies` asks for on our weight bytes (the
    peers' weights are as large or larger). A peer whose copies cannot be built is left out, with its reason."""
    from .timing import l2_bytes, rotation_copies

    r = rotation_copies(weight_bytes, l2_bytes(device))
    out = {OURS: [pw] + [_clone_prepared(pw) for _ in range(r - 1)]}
    for name, peer in peers.items():
        try:
            out[name] = [peer] + [builders[name]() for _ in range(r - 1)]
        except Exception as e:  # noqa: BLE001 - a peer never stops the run
            _report(progress, peer_info, name, f"back-to-back copies not built: {type(e).__name__}: {e}")
    return out


def time_copies(fns: list, tol: float, what: str, rep_ms: float) -> float:
    """`bench_ms_back_to_back` of `fns` (one call per weight copy) after checking every copy's output against the
    first one's (itself checked against the reference before): a copy off it raises BenchError."""
    from .timing import bench_ms_back_to_back

    y0 = fns[0]().float()
    for i, fn in enumerate(fns[1:], 1):
        err = _rel_err(fn(), y0)
        if not err <= tol:
            raise BenchError(f"{what} on weight copy {i} differs from the first copy: relative error {err:.3e} > "
                             f"{tol:.0e}")
    return bench_ms_back_to_back(fns, rep_ms)


def _then_between(fn):
    """`fn` followed by a small torch kernel on its output (`--back-to-back-between`); returns the output."""
    def call():
        return fn().add_(0)
    return call


def _back_to_back(rotation, impls, x, act8_codes, tol, rep_ms, progress, peer_info, between: bool = False):
    """Back-to-back times (`time_copies`) of ours (a wrong copy stops the run) and of every peer that was timed
    correctly on this row (a failure drops its back-to-back time, with the reason); `between`: each call followed by
    a torch kernel on its output."""
    import torch

    import humming_cute as hc

    wrap = _then_between if between else (lambda f: f)
    times, copies = {}, {}
    if act8_codes is not None:
        xq, xs = act8_codes
        fns = [wrap(lambda p=p: hc.gemm(xq, p, x_scales=xs, out_dtype=torch.float16)) for p in rotation[OURS]]
    else:
        fns = [wrap(lambda p=p: hc.gemm(x, p)) for p in rotation[OURS]]
    times[OURS], copies[OURS] = time_copies(fns, tol, "humming_cute gemm", rep_ms), len(fns)
    for name, inst in rotation.items():
        if name == OURS or impls.get(name, {}).get("status") != "ok":
            continue
        try:
            xps = [p.to_input(x) for p in inst]
            pfns = [wrap(lambda p=p, xp=xp: p.call(xp)) for p, xp in zip(inst, xps)]
            times[name], copies[name] = time_copies(pfns, inst[0].tol, name, rep_ms), len(pfns)
        except Exception as e:  # noqa: BLE001 - a peer never stops the run
            _report(progress, peer_info, name, f"not timed back to back: {type(e).__name__}: {e}")
        torch.cuda.synchronize()
    return times, copies


def _quantize_ms(x, xq, xs, args, *, m: int, k: int) -> float:
    """Time humming_cute's fused activation quantization of `x` after checking that it gives the codes and scales
    the GEMM was timed on (`xq`, `xs`, from the reference quantizer); a mismatch stops the run."""
    import torch

    import humming_cute as hc

    from .timing import bench_ms

    q, s = hc.quantize_input(x, args.a_dtype, 0)
    torch.cuda.synchronize()
    if not (torch.equal(q.view(torch.uint8), xq.view(torch.uint8)) and torch.equal(s, xs)):
        raise BenchError(f"hc.quantize_input({args.a_dtype}) differs from the reference quantizer at M={m} K={k}")
    del q, s
    return bench_ms(lambda: hc.quantize_input(x, args.a_dtype, 0), args.reps)


#: largest relative error of a peer's end-to-end output against the product of the codes its GEMM was checked
#: on: its own activation quantizer may round a few codes differently; a wrong scale or layout is far above this
END_TO_END_TOL = 1e-2


def _more_rounds(impls: dict, calls: dict, rounds: int, rep_ms: float, **row) -> dict:
    """`impls` with every ok implementation timed in `rounds` - 1 more rounds (`core.round_orders`: the order
    reversed every other round) and its time the median of its rounds (`core.with_rounds`); `calls` holds our call
    and, per peer, the dict that `_measure_peer` left its timed call in."""
    from .timing import bench_ms

    fns = {}
    for name, e in impls.items():
        fn = calls.get(name)
        fn = fn.get("call") if isinstance(fn, dict) else fn
        if e.get("status") == "ok" and fn is not None:
            fns[name] = fn
    times = {name: [impls[name]["ms"]] for name in fns}
    for order in core.round_orders(list(fns), rounds)[1:]:
        for name in order:
            times[name].append(bench_ms(fns[name], rep_ms))
    return {name: core.with_rounds(e, times[name], **row) if name in times else e for name, e in impls.items()}


def _measure_peer(peer, x, y_ref, y_float, w_deq, rep_ms, *, m, n, k, bytes_, memory_floor, compute_floor,
                  end_to_end: bool = False, keep: Optional[dict] = None) -> dict:
    """Check one peer's output against its reference (``ref_input(x_peer) @ ref_weight^T``, or `y_ref` when it
    multiplies x as it is by our weight), then time it; any failure becomes a record. With `end_to_end` (8-bit
    runs) the peer's end-to-end time is recorded too: its `end_to_end` call on x, checked and timed, or its own
    time when it takes x as it is."""
    import torch

    from . import timing
    from .timing import bench_ms, full_fp32_matmul

    try:
        xp = peer.to_input(x)
        yp = peer.call(xp)
        torch.cuda.synchronize()
        if xp is x and peer.ref_weight is None and peer.ref_input is None:
            ref = y_ref  # same activations, same weight as ours
        else:
            xr = xp.float() if peer.ref_input is None else peer.ref_input(xp)
            with full_fp32_matmul():
                ref = xr @ (w_deq if peer.ref_weight is None else peer.ref_weight).t()
            del xr
        if tuple(yp.shape) != tuple(ref.shape):
            return core.skipped_entry("wrong", f"output shape {tuple(yp.shape)}, expected {tuple(ref.shape)}")
        err = _rel_err(yp, ref)
        err_float = _rel_err(yp, y_float)
        del yp
        if not err <= peer.tol:
            return core.skipped_entry("wrong", f"output off its reference at M={m} N={n} K={k}: relative error "
                                               f"{err:.3e} > {peer.tol:.0e}", rel_err=err)
        t = bench_ms(lambda: peer.call(xp), rep_ms)
        if keep is not None:
            keep["call"] = lambda: peer.call(xp)     # (more timing rounds)
    except Exception as e:  # noqa: BLE001 - a peer never stops the run
        return core.skipped_entry("failed", f"{type(e).__name__}: {e}")
    entry = core.ok_entry(t, err, err_float, m=m, n=n, k=k, bytes_=bytes_, memory_floor=memory_floor,
                          compute_floor=compute_floor)
    entry["timed_as"] = timing.last_mode
    if end_to_end and peer.end_to_end is not None:
        entry.update(_end_to_end(peer, x, ref, rep_ms))
    elif end_to_end and xp is x:
        entry["ms_end_to_end"] = t  # it multiplies the 16-bit activations as they are
    return entry


def _end_to_end(peer, x, ref, rep_ms) -> dict:
    """A peer's `end_to_end` call on the 16-bit x, checked against `ref` within `END_TO_END_TOL`, then timed:
    ``ms_end_to_end`` and ``rel_err_end_to_end``, or ``end_to_end_reason`` when it fails."""
    import torch

    from .timing import bench_ms

    try:
        y = peer.end_to_end(x)
        torch.cuda.synchronize()
        err = _rel_err(y, ref) if tuple(y.shape) == tuple(ref.shape) else float("nan")
        del y
        if not err <= END_TO_END_TOL:
            return dict(end_to_end_reason=f"end-to-end output off the reference of its GEMM: relative error "
                                          f"{err:.3e} > {END_TO_END_TOL:.0e}")
        return dict(ms_end_to_end=bench_ms(lambda: peer.end_to_end(x), rep_ms), rel_err_end_to_end=err)
    except Exception as e:  # noqa: BLE001 - a peer never stops the run
        return dict(end_to_end_reason=f"{type(e).__name__}: {e}")


def _our_config(m, pw, a_name, device) -> Optional[str]:
    """The kernel config gemm() picks for this M (informational; None when it cannot be asked)."""
    try:
        from humming_cute.ops import _num_sms, device_target
        from humming_cute.tune import default_config

        c_name = "float16" if core.is_act8(a_name) else a_name
        cfg = default_config(m, pw.n_pad, pw.k_pad, a_dtype=pw.a_dtype, b_dtype=pw.b_dtype, c_dtype=c_name,
                             group_size=pw.group_size, arch=device_target(device), has_bias=False,
                             num_sms=_num_sms(device))
        return repr(cfg)
    except Exception:  # noqa: BLE001 - informational only
        return None


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = core.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("python -m humming_cute.bench needs a CUDA GPU", file=sys.stderr)
        return 2
    from humming_cute.runtime.compile import compile_stats

    from .plot import write_png
    from .timing import act8_peak_flops, back_to_back_name, copy_bandwidth, cublas_peak_flops, environment

    device = torch.device("cuda")
    env = environment(device, core.command_line(argv))
    print(f"{env['card']} (sm {env['sm']}, {env['sm_count']} SMs), torch {env['torch']}, CuTe DSL "
          f"{env['cutlass_dsl']}, humming-kernels {env['humming_kernels']}; timer: {env['timer']}")
    act8 = core.is_act8(args.a_dtype)
    copy_bw = copy_bandwidth(args.reps)
    if act8:
        peak, peak_problem = act8_peak_flops(args.a_dtype, rep_ms=args.reps)
        print(f"copy bandwidth {copy_bw / 1e9:.0f} GB/s (read + write); {peak_problem.split(',')[0]} "
              f"{peak / 1e12:.0f} TFLOP/s")
    else:
        peak = cublas_peak_flops(getattr(torch, args.a_dtype), rep_ms=args.reps)
        peak_problem = f"torch.matmul {args.a_dtype} 8192x8192x8192, random data"
        print(f"copy bandwidth {copy_bw / 1e9:.0f} GB/s (read + write); cuBLAS {args.a_dtype} 8192^3 "
              f"{peak / 1e12:.0f} TFLOP/s")
    measured = dict(copy_bandwidth_gbps=copy_bw / 1e9, cublas_peak_tflops=peak / 1e12,
                    cublas_peak_problem=peak_problem)
    common = dict(a_dtype=args.a_dtype, b_dtype=args.b_dtype, group_size=args.group_size,
                  scale_dtype=args.scale_dtype, peers=args.peer_list, reps_ms=args.reps, rounds=args.rounds,
                  seed=args.seed, tolerance=core.tolerance(args.a_dtype),
                  autotune_candidates=getattr(args, "autotune", 0))
    if act8:
        common.update(output_dtype="float16", activations=ACT8_NOTE, end_to_end_tolerance=END_TO_END_TOL)
    if args.moe:
        from . import moe

        config = dict(mode="moe", presets={name: core.MOE_PRESETS[name] for name in args.moe_presets},
                      projections=args.moe_projections, tokens=args.token_list, routing=moe.ROUTING_NOTE,
                      timed=moe.TIMED_NOTE, back_to_back_tokens=args.b2b_list,
                      back_to_back_timer=back_to_back_name(), **common)
        labels = core.MOE_IMPL_LABELS
        total = len(args.moe_jobs) * len(args.token_list)
    else:
        config = dict(mode="dense", shapes=[f"{n}x{k}" for n, k in args.shape_list], ms=args.m_list,
                      back_to_back_ms=args.b2b_list,
                      back_to_back_timer=back_to_back_name(getattr(args, "back_to_back_between", False)), **common)
        labels = core.IMPL_LABELS
        total = len(args.shape_list) * len(args.m_list)
    peer_info = {p: dict(label=labels[p], notes=[], reasons=[]) for p in args.peer_list}
    hc_configs: dict = {}
    rows: list = []
    progress = core.progress_bar(total)

    def document(error: Optional[str] = None) -> dict:
        extra = dict(compile=compile_stats(), humming_cute_configs=hc_configs)
        if error:
            extra["error"] = error
        return core.assemble_result(env=env, config=config, measured=measured, peers=peer_info, rows=rows,
                                    extra=extra)

    try:
        if args.moe:
            for job in args.moe_jobs:
                rows.extend(moe.job_rows(job, args, device=device, copy_bw=copy_bw, peak=peak, progress=progress,
                                         peer_info=peer_info, hc_configs=hc_configs))
        else:
            for n, k in args.shape_list:
                rows.extend(_shape_rows(n, k, args, device=device, copy_bw=copy_bw, peak=peak, progress=progress,
                                        peer_info=peer_info, hc_configs=hc_configs))
    except BaseException as e:
        progress.close()
        if args.json:  # keep what was measured, with the error, then fail loudly
            core.write_json(args.json, document(f"{type(e).__name__}: {e}"))
            print(f"partial results written to {args.json}", file=sys.stderr)
        raise
    progress.close()

    doc = document()
    print()
    if args.moe:
        print(f"MoE {args.a_dtype} x {args.b_dtype} g{args.group_size} ({args.scale_dtype} scales); times in ms "
              f"(GEMM only; align ms = humming_cute's moe_align_block_size, apart); E hit = experts with >= 1 "
              f"token; bm = humming_cute's block_m; %mem = memory floor (weights of the experts hit + "
              f"activations + output) over time; hc/<peer> = our time / peer time")
        print(core.format_moe_table(doc["rows"], args.peer_list))
    elif act8:
        print(f"{args.a_dtype} x {args.b_dtype} g{args.group_size} ({args.scale_dtype} scales), per-token activation "
              f"scales, fp16 output; times in ms; hc ms = GEMM on codes made before timing, q ms = hc.quantize_input, "
              f"e2e = both; %mem / %cmp = memory / compute floor over the GEMM time; hc/<peer> = our GEMM time / "
              f"peer GEMM time (end-to-end ratios in the JSON)")
        print(core.format_table(doc["rows"], args.peer_list))
    else:
        print(f"{args.a_dtype} x {args.b_dtype} g{args.group_size} ({args.scale_dtype} scales); times in ms; "
              f"%mem / %cmp = memory / compute floor over time; hc/<peer> = our time / peer time")
        print(core.format_table(doc["rows"], args.peer_list))
    if any("ratio_back_to_back_vs" in r for r in doc["rows"]):
        print(f"\nback to back ({back_to_back_name(getattr(args, 'back_to_back_between', False))}); %mem = memory "
              f"floor over this time")
        print(core.format_back_to_back_table(doc["rows"], args.peer_list))
    if peer_info:
        print()
        print(core.format_summary(doc["peers"]))
    if args.json:
        core.write_json(args.json, doc)
        print(f"\nJSON: {args.json}")
    if args.png:
        why = write_png(doc, args.png)
        print(f"PNG: {args.png}" if why is None else f"PNG: {why}")
    return 0
