"""First timing of :class:`e3nn_pyg.conv.Convolution` on one CPU thread.

Two systems, two kernels, both engines of the kernel, float32 and float64:

- benzene (the tutorial's 12 atoms, radius graph of 3 Å);
- a batch of 32 QM9-sized molecules (14 to 22 atoms, mean 18, positions in a 3 Å ball,
  atoms at least 1 Å apart, radius graph of 3 Å);
- the tutorial's kernel ``2x0 -> 4x0+4x1+4x2`` (24 paths) and a wider one
  ``16x0e+8x1o+4x2e -> 16x0e+8x1o+4x2e``; radial model ``CosineBasisModel(max_radius=3,
  number_of_basis=3, h=100, L=2, act=Softplus(beta=5))`` as in the tutorial.

``forward`` times ``conv(x, pos, batch=batch)`` (radius graph included) without autograd;
``fwd+bwd`` times a forward with ``pos`` requiring grad and the backward of
``out.pow(2).sum()`` to the parameters and the positions. Medians over ``--repeats``
calls (after a warm-up); ``wall`` is elapsed time, ``cpu`` the calling thread's CPU time
(less sensitive to other processes on a shared machine).

    python benchmarks/bench_conv_first.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from e3nn_pyg.conv import Convolution
from e3nn_pyg.graph import radius_graph
from e3nn_pyg.kernel import Kernel
from e3nn_pyg.non_linearities import rescaled_act
from e3nn_pyg.radial import CosineBasisModel

MAX_RADIUS = 3.0
KERNELS = {
    "tutorial 2x0 -> 4x0+4x1+4x2": ([(2, 0)], [(4, 0), (4, 1), (4, 2)]),
    "16x0e+8x1o+4x2e -> same": ("16x0e+8x1o+4x2e", "16x0e+8x1o+4x2e"),
}
ENGINES = ("reference", "fused")
BENZENE = torch.tensor(
    [[0.0, 1.40272, 0.0], [-1.21479, 0.70136, 0.0], [-1.21479, -0.70136, 0.0],
     [0.0, -1.40272, 0.0], [1.21479, -0.70136, 0.0], [1.21479, 0.70136, 0.0],
     [0.0, 2.49029, 0.0], [-2.15666, 1.24515, 0.0], [-2.15666, -1.24515, 0.0],
     [0.0, -2.49029, 0.0], [2.15666, -1.24515, 0.0], [2.15666, 1.24515, 0.0]],
    dtype=torch.float64,
)  # fmt: skip


def ball_molecule(num_atoms: int, generator: torch.Generator) -> torch.Tensor:
    """Atoms uniform in a 3 Å ball, pairwise at least 1 Å apart (rejection sampling)."""
    points: list[torch.Tensor] = []
    while len(points) < num_atoms:
        p = (2 * torch.rand(3, generator=generator, dtype=torch.float64) - 1) * 3.0
        if p.norm() <= 3.0 and all((p - q).norm() >= 1.0 for q in points):
            points.append(p)
    return torch.stack(points)  # [num_atoms, 3]


def systems(generator: torch.Generator):
    yield "benzene", BENZENE, torch.zeros(12, dtype=torch.long)
    sizes = torch.randint(14, 23, (32,), generator=generator).tolist()
    pos = torch.cat([ball_molecule(n, generator) for n in sizes])
    batch = torch.repeat_interleave(torch.arange(32), torch.tensor(sizes))
    yield f"32 molecules ({sum(sizes)} atoms)", pos, batch


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def time_conv(
    conv: Convolution, x: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, repeats: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall, cpu) medians in ms of the forward and of forward + backward."""

    def forward():
        with torch.no_grad():
            return conv(x, pos, batch=batch)

    def train_step():
        p = pos.detach().requires_grad_(True)
        conv(x, p, batch=batch).pow(2).sum().backward()

    return median_ms(forward, repeats), median_ms(train_step, repeats)


def make_conv(rs_in, rs_out, engine: str, dtype: torch.dtype) -> Convolution:
    torch.manual_seed(0)
    radial = partial(
        CosineBasisModel,
        max_radius=MAX_RADIUS,
        number_of_basis=3,
        h=100,
        L=2,
        act=rescaled_act.Softplus(beta=5),
    )
    conv = Convolution(partial(Kernel, RadialModel=radial, engine=engine), rs_in, rs_out)
    return conv.to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description="First timing of the convolution.")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)

    header = (
        f"{'system':<26} {'E':>5} {'kernel':<28} {'engine':<9} {'dtype':<7}"
        f" {'forward ms':>16} {'fwd+bwd ms':>16}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, medians of "
          f"{args.repeats}; each time is wall / thread-CPU")  # fmt: skip
    print(header)
    print("-" * len(header))
    for system, pos64, batch in systems(generator):
        num_edges = radius_graph(pos64, MAX_RADIUS, batch).shape[1]
        for kernel_name, (rs_in, rs_out) in KERNELS.items():
            for engine in ENGINES:
                for dtype in (torch.float32, torch.float64):
                    conv = make_conv(rs_in, rs_out, engine, dtype)
                    pos = pos64.to(dtype)
                    x = torch.randn(pos.shape[0], conv.Rs_in.dim, generator=generator).to(dtype)
                    (fw, fc), (bw, bc) = time_conv(conv, x, pos, batch, args.repeats)
                    print(
                        f"{system:<26} {num_edges:>5} {kernel_name:<28} {engine:<9} "
                        f"{str(dtype).removeprefix('torch.'):<7} {fw:7.2f} / {fc:6.2f}"
                        f"  {bw:7.2f} / {bc:6.2f}"
                    )


if __name__ == "__main__":
    main()
