"""`train.precision`, resolved for the device a rank trains on.

`bf16` trains under bfloat16 autocast, `fp32` without it, and `auto` (the conv presets) uses bf16
where the device computes it natively: CUDA devices that support it, and CPUs with AVX512-BF16 or
AMX (oneDNN's bf16 kernels). Elsewhere bf16 is emulated: on an AVX2-only AMD EPYC it measured 10-20x
slower per step than fp32 (5-10 s against 0.5 s for a conv_sn_cond step), so `auto` trains in fp32
there. The resolved precision is what the run records.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (not by emulation)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device, world_size: int = 1) -> str:
    """`fp32` or `bf16` for `train.precision` on `device`. With several ranks, `auto` gives bf16
    only if every rank has it natively (one all-reduce), so the ranks train alike."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    ok = native_bf16(device)
    if world_size > 1 and dist.is_initialized():
        flag = torch.tensor([int(ok)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        ok = bool(flag.item())
    return "bf16" if ok else "fp32"
