"""Time the backends of :func:`e3nn_pyg.graph.radius_graph` on one CPU thread.

Prints, for each system, the median wall time and the median CPU time of the calling thread
(less sensitive to other processes on a shared machine) of every available backend, and
checks that all backends return the same tensor.

    python benchmarks/bench_graph.py            # the three reference systems
    python benchmarks/bench_graph.py --sweep    # batches of molecules of growing size (auto rule)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from e3nn_pyg.graph import radius_graph

DENSITY = 1000 / 20.0**3  # atoms per Å^3, the 1,000-atom system


def molecules(sizes: list[int], density: float, generator: torch.Generator):
    """Molecules of the given sizes, atoms uniform in a cube of the given density."""
    pos = [torch.rand(n, 3, generator=generator) * (n / density) ** (1 / 3) for n in sizes]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.cat(pos), batch


def systems(generator: torch.Generator):
    sizes = torch.randint(9, 30, (128,), generator=generator).tolist()  # QM9: 9..29, mean ~18
    yield f"128 QM9-like molecules ({sum(sizes)} atoms)", *molecules(sizes, DENSITY, generator)
    yield "1,000 atoms, 20 Å cube", *molecules([1000], DENSITY, generator)
    side = (1e4 / DENSITY) ** (1 / 3)
    yield f"10,000 atoms, {side:.0f} Å cube", *molecules([10000], DENSITY, generator)


def sweep(generator: torch.Generator, total: int = 4096):
    for n in (8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 4096):
        pos, batch = molecules([n] * max(1, total // n), DENSITY, generator)
        yield f"{max(1, total // n)} x {n} atoms", pos, batch


def measure(fns, repeats: int) -> list[tuple[float, float]]:
    """Median wall and thread-CPU milliseconds of each ``fn()``, calls interleaved."""
    for fn in fns:
        fn()  # warm-up
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            w, c = time.perf_counter(), time.thread_time()
            fn()
            cpu[k].append(time.thread_time() - c)
            wall[k].append(time.perf_counter() - w)
    return [(statistics.median(w) * 1e3, statistics.median(c) * 1e3) for w, c in zip(wall, cpu)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=float, default=5.0, help="cutoff radius in Å (default 5)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--sweep", action="store_true", help="molecule-size sweep instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backends = ["torch"]
    try:
        import torch_cluster  # noqa: F401

        backends.append("torch_cluster")
    except ImportError:
        print("torch_cluster not importable: timing the torch backend only")

    generator = torch.Generator().manual_seed(0)
    cases = sweep(generator) if args.sweep else systems(generator)
    header = f"{'system':<36} {'edges':>9}" + "".join(
        f" {b + ' wall':>19} {b + ' cpu':>18}" for b in backends
    )
    print(f"r = {args.r} Å, float32, 1 thread, medians of {args.repeats} calls (ms)")
    print(header)
    for name, pos, batch in cases:
        results = [radius_graph(pos, args.r, batch, backend=b) for b in backends]
        if any(not torch.equal(results[0], other) for other in results[1:]):
            raise AssertionError(f"{name}: the backends disagree")
        row = f"{name:<36} {results[0].size(1):>9}"
        calls = [
            functools.partial(radius_graph, pos, args.r, batch, backend=backend)
            for backend in backends
        ]
        for wall, cpu in measure(calls, args.repeats):
            row += f" {wall:>19.2f} {cpu:>18.2f}"
        print(row)


if __name__ == "__main__":
    main()
