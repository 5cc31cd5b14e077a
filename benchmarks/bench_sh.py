"""Throughput of :func:`e3nn_pyg.o3.spherical_harmonics` on one CPU thread.

Prints, for ``lmax`` in 2, 4, 8 (all orders ``0..lmax``, 'component' normalization) on
100,000 random vectors, in float32 and float64, the number of vectors per second of the
forward pass and of forward + backward (the gradient with respect to the vectors), from the
median thread-CPU time of interleaved calls after a warm-up. Peers:

- ``plain``: the nine l <= 2 components written out as explicit polynomials of the unit
  vector (the floor any implementation can hope for), with the ratio ours / plain;
- ``e3nn 0.6``: ``e3nn.o3.spherical_harmonics``, when it is importable.

Every implementation is checked against ours before it is timed.

    python benchmarks/bench_sh.py
    python benchmarks/bench_sh.py --repeats 21 --clock wall
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from e3nn_pyg.o3 import spherical_harmonics

LMAXES = (2, 4, 8)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
SQRT3, SQRT5, SQRT15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)


def plain_l2(vectors: Tensor) -> Tensor:
    """Y^0, Y^1, Y^2 ('component', polar axis y) as explicit polynomials."""
    x, y, z = (vectors / vectors.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack(
        [
            torch.ones_like(x),
            SQRT3 * x,
            SQRT3 * y,
            SQRT3 * z,
            SQRT15 * x * z,
            SQRT15 * x * y,
            SQRT5 / 2 * (2 * y * y - x * x - z * z),
            SQRT15 * y * z,
            SQRT15 / 2 * (z * z - x * x),
        ],
        dim=-1,
    )  # [N, 9]


def implementations(lmax: int) -> dict[str, Callable[[Tensor], Tensor]]:
    ls = list(range(lmax + 1))
    impls = {"ours": lambda v: spherical_harmonics(ls, v)}
    if lmax == 2:
        impls["plain"] = plain_l2
    try:
        from e3nn import o3 as e3nn_o3

        impls["e3nn 0.6"] = lambda v: e3nn_o3.spherical_harmonics(
            ls, v, normalize=True, normalization="component"
        )
    except ImportError:
        pass
    return impls


def measure(calls: list[Callable[[], object]], repeats: int, clock: Callable[[], float]):
    """Median seconds of each call, calls interleaved, after one warm-up round."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for k, call in enumerate(calls):
            start = clock()
            call()
            times[k].append(clock() - start)
    return [statistics.median(t) for t in times]


def forward_backward(func: Callable[[Tensor], Tensor], vectors: Tensor, grad_out: Tensor):
    def call():
        leaf = vectors.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(func(leaf), leaf, grad_out)
        return grad

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=100_000, help="vectors (default 1e5)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # e3nn 0.6's TorchScript deprecation notices
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    names = ["ours", "plain", "e3nn 0.6"]
    print(
        f"{args.num:,} vectors, 1 thread, median {args.clock} time of {args.repeats} calls; "
        "M vectors / s (fwd = forward, f+b = forward + backward)"
    )
    header = f"{'dtype':<8} {'lmax':>4}"
    header += "".join(f" {name + ' fwd':>14} {name + ' f+b':>14}" for name in names)
    header += f" {'ours/plain fwd':>15} {'ours/plain f+b':>15}"
    print(header)
    generator = torch.Generator().manual_seed(0)
    for dtype_name, dtype in DTYPES.items():
        vectors = torch.randn(args.num, 3, dtype=dtype, generator=generator)
        for lmax in LMAXES:
            impls = implementations(lmax)
            reference = impls["ours"](vectors)
            grad_out = torch.randn(reference.shape, dtype=dtype, generator=generator)
            tolerance = 1e-4 if dtype == torch.float32 else 1e-10
            for name, func in impls.items():
                error = (func(vectors) - reference).abs().max().item()
                if error > tolerance:
                    raise AssertionError(f"{name} differs from ours by {error:.2e} (lmax {lmax})")
            calls = []
            for func in impls.values():
                calls += [
                    functools.partial(func, vectors),
                    forward_backward(func, vectors, grad_out),
                ]
            medians = measure(calls, args.repeats, clock)  # fwd, f+b, fwd, f+b, ...
            seconds = {name: medians[2 * k : 2 * k + 2] for k, name in enumerate(impls)}
            row = f"{dtype_name:<8} {lmax:>4}"
            for name in names:
                if name in seconds:
                    row += "".join(f" {args.num / s / 1e6:>14.2f}" for s in seconds[name])
                else:
                    row += f" {'-':>14} {'-':>14}"
            if "plain" in seconds:  # throughput ratio: below 1 means ours is slower
                row += "".join(
                    f" {plain / ours:>15.2f}"
                    for ours, plain in zip(seconds["ours"], seconds["plain"])
                )
            print(row, flush=True)


if __name__ == "__main__":
    main()
