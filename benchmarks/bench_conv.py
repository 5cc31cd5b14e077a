"""Time e3nn_pyg's convolution against e3nn 0.6 on CPU (float32).

For each workload and kernel, prints one row per implementation: inference, train step
(forward + backward to the parameters and the input features) and force step (energy
gradient with respect to positions with ``create_graph=True``, then the backward of a
force loss to the parameters: the double backward of force training) in milliseconds
(medians over repeats, both implementations timed alternately in this process), edges per
second of the train step, the speed-up over e3nn, the peak memory, the achieved GFLOP/s
and the distance to the radial MLP's matrix-multiply floor.

- **FLOPs** are nominal and the same for both implementations: the forward of the radial
  MLP on every directed edge plus the dense tensor product (Clebsch-Gordan contraction with
  the spherical harmonics, coupling with the features, radial weights) per edge. GFLOP/s
  is that count over the inference time; ``%mm`` divides it by the GFLOP/s of a plain
  1024^3 ``torch.mm`` measured in the same run.
- **floor**: the time of the radial MLP's matrix multiplies alone (``torch.mm`` at the
  MLP's shapes on every directed edge: forward for inference; forward and the two
  backward products for the train step); ``x floor`` = time / floor. Running the MLP once
  per undirected pair (as e3nn_pyg does) can go below it.
- **Memory**: torch's CPU allocations are invisible to tracemalloc, so every
  (workload, kernel, implementation) runs once more in a fresh subprocess (glibc's mmap
  threshold fixed at 128 kB so that freed blocks go back to the system) that records
  its peak resident set (``VmHWM``) after setup and after an inference, a train and a
  force step, in that order. ``MB`` is the growth of the peak resident set over setup up
  to the end of the force step (the largest of the three), i.e. the peak working memory
  of the layer.

    python benchmarks/bench_conv.py            # mol and big, 1 and 2 threads (~10 min)
    python benchmarks/bench_conv.py --quick    # mol only, 1 thread, fewer repeats
    python benchmarks/bench_conv.py --compiled # adds the row "e3nn_pyg compiled"

``--compiled`` adds ``Kernel(engine="compiled")`` (torch.compile of the engine's chunks)
and prints, under each table, the time of its first calls (the cold compilation; run
with ``TORCHINDUCTOR_CACHE_DIR`` set to an empty folder for a truly cold one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from functools import partial

import torch

from e3nn_pyg.kernel import Kernel
from e3nn_pyg.o3 import Rs
from e3nn_pyg.radial import CosineBasisModel
from e3nn_pyg.tensor_product.fused import pair_edges
from e3nn_pyg.tensor_product.paths import selection_rule

RADIUS = 5.0
STEPS = ("inference", "train", "force")
NUMBER_OF_BASIS, HIDDEN = 10, 100
FEATURES = "16x0e+8x1o+4x2e"
KERNELS = {  # name: (Rs_in, Rs_out, largest filter order, mode)
    "tutorial": ("2x0e", "4x0e+4x1o+4x2e", 2, "full"),
    "fc-l2": (FEATURES, FEATURES, 2, "full"),
    "fc-l3": (FEATURES, FEATURES, 3, "full"),
    "cw-l2": (FEATURES, FEATURES, 2, "channelwise"),
    "cw-l3": (FEATURES, FEATURES, 3, "channelwise"),
}


# -- workloads -------------------------------------------------------------------------------
def _sample(n: int, inside, draw, generator: torch.Generator) -> torch.Tensor:
    """``n`` points drawn by ``draw`` with ``inside``, at least 1 Å apart (rejection)."""
    points = torch.empty(0, 3, dtype=torch.float64)
    while points.shape[0] < n:
        candidate = draw(generator)
        if inside(candidate) and (
            points.shape[0] == 0 or torch.cdist(candidate[None], points).min() >= 1.0
        ):
            points = torch.cat([points, candidate[None]])
    return points


def workload(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``[N, 3]`` (float32) and the edges of the radius graph, seeded."""
    generator = torch.Generator().manual_seed(0)
    if name == "mol":  # 32 molecules x 18 atoms in 3 Å balls, far apart
        ball = [
            _sample(18, lambda p: p.norm() <= 3.0, lambda g: 6 * torch.rand(3, generator=g,
                    dtype=torch.float64) - 3, generator) + 100.0 * i
            for i in range(32)
        ]  # fmt: skip
        pos = torch.cat(ball)
    else:  # 1,000 atoms in a 20 Å cube
        pos = _sample(
            1000, lambda p: True, lambda g: 20 * torch.rand(3, generator=g, dtype=torch.float64),
            generator,
        )  # fmt: skip
    pos = pos.float()
    distance = torch.cdist(pos, pos)  # [N, N]
    dst, src = torch.nonzero((distance < RADIUS) & (distance > 0), as_tuple=True)
    return pos, torch.stack([src, dst])  # sorted by target


# -- the implementations ---------------------------------------------------------------------
class Ours(torch.nn.Module):
    def __init__(self, rs_in: str, rs_out: str, lmax: int, mode: str, engine: str = "auto"):
        super().__init__()
        radial = partial(
            CosineBasisModel, max_radius=RADIUS, number_of_basis=NUMBER_OF_BASIS, h=HIDDEN,
            L=1, act=torch.nn.functional.silu,
        )  # fmt: skip
        rule = partial(selection_rule, lmax=lmax)
        self.kernel = Kernel(rs_in, rs_out, radial, selection_rule=rule, mode=mode, engine=engine)

    def forward(self, x, pos, edge_index):
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]  # [E, 3]
        pairing = pair_edges(edge_index, edge_vec)
        return self.kernel.convolve(x, edge_index, edge_vec, x.shape[0], pairing)


class E3nn(torch.nn.Module):
    """The same convolution written with e3nn 0.6's tensor products (as its examples do)."""

    def __init__(self, rs_in: str, rs_out: str, lmax: int, mode: str) -> None:
        super().__init__()
        from e3nn import o3
        from e3nn.nn import FullyConnectedNet

        irreps_in, irreps_out = o3.Irreps(rs_in), o3.Irreps(rs_out)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        if mode == "full":
            self.tp = o3.FullyConnectedTensorProduct(
                irreps_in, self.irreps_sh, irreps_out, shared_weights=False
            )
            self.linear = None
        else:  # one weight per input channel and path ('uvu'), then a per-node linear
            mid, instructions = [], []
            for i, (mul, ir_in) in enumerate(irreps_in):
                for j, (_, ir_sh) in enumerate(self.irreps_sh):
                    for ir_out in ir_in * ir_sh:
                        if ir_out in irreps_out:
                            instructions.append((i, j, len(mid), "uvu", True))
                            mid.append((mul, ir_out))
            self.tp = o3.TensorProduct(
                irreps_in, self.irreps_sh, o3.Irreps(mid), instructions,
                shared_weights=False, internal_weights=False,
            )  # fmt: skip
            self.linear = o3.Linear(o3.Irreps(mid), irreps_out)
        self.fc = FullyConnectedNet(
            [NUMBER_OF_BASIS, HIDDEN, self.tp.weight_numel], torch.nn.functional.silu
        )

    def forward(self, x, pos, edge_index):
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace

        src, dst = edge_index
        edge_vec = pos[src] - pos[dst]  # [E, 3]
        sh = o3.spherical_harmonics(self.irreps_sh, edge_vec, True, normalization="component")
        embedding = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, RADIUS, NUMBER_OF_BASIS, basis="cosine", cutoff=True
        )  # [E, number_of_basis]
        messages = self.tp(x[src], sh, self.fc(embedding))  # [E, dim]
        out = messages.new_zeros(x.shape[0], messages.shape[1]).index_add(0, dst, messages)
        return out if self.linear is None else self.linear(out)


IMPLEMENTATIONS = {
    "e3nn_pyg": Ours,
    "e3nn_pyg compiled": partial(Ours, engine="compiled"),
    "e3nn 0.6": E3nn,
}


# -- steps -----------------------------------------------------------------------------------
def steps(model, pos, edge_index, rs_in: str, rs_out: str):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(pos.shape[0], Rs(rs_in).dim, generator=generator)
    probe = torch.randn(pos.shape[0], Rs(rs_out).dim, generator=generator)
    params = list(model.parameters())

    def inference():
        with torch.no_grad():
            model(x, pos, edge_index)

    def train():
        x_ = x.detach().requires_grad_()
        energy = (model(x_, pos, edge_index) * probe).sum()
        torch.autograd.grad(energy, [*params, x_])

    def force():
        pos_ = pos.detach().requires_grad_()
        energy = (model(x, pos_, edge_index) * probe).sum()
        (forces,) = torch.autograd.grad(energy, pos_, create_graph=True)
        torch.autograd.grad(forces.pow(2).sum(), params)

    return {"inference": inference, "train": train, "force": force}


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def mm_gflops(m: int, k: int, n: int, repeats: int = 5) -> tuple[float, float]:
    """Median milliseconds and GFLOP/s of ``torch.mm`` of ``[m, k] @ [k, n]``."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    ms = median_ms(lambda: torch.mm(a, b), repeats)
    return ms, 2 * m * k * n / ms / 1e6


def nominal_flops(kernel: Kernel, num_edges: int) -> float:
    """Forward FLOPs of the straightforward convolution (see the module docstring)."""
    n_w = kernel.n_path
    per_edge = 2 * (NUMBER_OF_BASIS * HIDDEN + HIDDEN * n_w)
    for pair in kernel.plan.pairs:
        di, do = 2 * pair.l_in + 1, 2 * pair.l_out + 1
        for l_f in pair.filters:
            per_edge += 2 * di * (2 * l_f + 1) * do + 2 * pair.mul_in * di * do
            u = 1 if kernel.mode == "channelwise" else pair.mul_out
            per_edge += 2 * u * pair.mul_in * do
    return per_edge * num_edges


def floor_ms(n_w: int, num_edges: int) -> tuple[float, float]:
    """The radial MLP's matmuls on every edge: (forward, forward + backward) milliseconds."""
    forward = [(num_edges, NUMBER_OF_BASIS, HIDDEN), (num_edges, HIDDEN, n_w)]
    backward = [(num_edges, n_w, HIDDEN), (HIDDEN, num_edges, n_w), (NUMBER_OF_BASIS,
                num_edges, HIDDEN)]  # fmt: skip
    fwd = sum(mm_gflops(*shape)[0] for shape in forward)
    return fwd, fwd + sum(mm_gflops(*shape)[0] for shape in backward)


# -- memory, in a subprocess -----------------------------------------------------------------
def memory_child(workload_name: str, kernel_name: str, implementation: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pos, edge_index = workload(workload_name)
    rs_in, rs_out, lmax, mode = KERNELS[kernel_name]
    model = IMPLEMENTATIONS[implementation](rs_in, rs_out, lmax, mode)
    fns = steps(model, pos, edge_index, rs_in, rs_out)
    base = peak_rss_mb()
    peak = {}
    for step in STEPS:
        fns[step]()
        peak[step] = peak_rss_mb() - base
    print(json.dumps(peak))


def peak_rss_mb() -> float:
    """The process' peak resident set (``VmHWM``; ``ru_maxrss`` would include the parent's)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def memory(workload_name: str, kernel_name: str, implementation: str) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", workload_name, kernel_name, implementation],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the tables ------------------------------------------------------------------------------
def run(workloads, kernels, threads, repeats, with_memory, names) -> None:
    torch.set_num_threads(threads)
    _, peak = mm_gflops(1024, 1024, 1024)
    print(f"\n## {threads} thread(s): torch.mm 1024^3 float32 = {peak:.1f} GFLOP/s")
    for workload_name in workloads:
        pos, edge_index = workload(workload_name)
        num_edges = edge_index.shape[1]
        pairs = pair_edges(edge_index).num_paired
        print(
            f"\n### {workload_name}: {pos.shape[0]} atoms, {num_edges} edges ({pairs} pairs), "
            f"radius {RADIUS} Å, median of {repeats[workload_name]}"
        )
        print(
            "| kernel | impl | infer ms | train ms | force ms | train edges/s | speed-up "
            "inf/train/force | MB (peak) | GFLOP/s | %mm | x floor inf/train |"
        )
        print("|" + "---|" * 11)
        notes = []
        for kernel_name in kernels:
            rs_in, rs_out, lmax, mode = KERNELS[kernel_name]
            torch.manual_seed(0)
            models = {name: IMPLEMENTATIONS[name](rs_in, rs_out, lmax, mode) for name in names}
            n_w = models["e3nn_pyg"].kernel.n_path
            flops = nominal_flops(models["e3nn_pyg"].kernel, num_edges)
            floor = floor_ms(n_w, num_edges)
            fns = {name: steps(m, pos, edge_index, rs_in, rs_out) for name, m in models.items()}
            times = {name: {} for name in models}
            first = {name: {} for name in models}
            for step in STEPS:
                for name in models:  # warm-up (compilation for "e3nn_pyg compiled")
                    start = time.perf_counter()
                    fns[name][step]()
                    first[name][step] = time.perf_counter() - start
                for name in models:
                    times[name][step] = median_ms(fns[name][step], repeats[workload_name])
            for name in models:
                t = times[name]
                speed = "/".join(f"{times['e3nn 0.6'][s] / t[s]:.1f}" for s in STEPS)
                mb = memory(workload_name, kernel_name, name)["force"] if with_memory else math.nan
                gflops = flops / t["inference"] / 1e6
                print(
                    f"| {kernel_name} | {name} | {t['inference']:.1f} | {t['train']:.1f} | "
                    f"{t['force']:.1f} | {num_edges / t['train'] * 1e3:,.0f} | {speed} | "
                    f"{mb:.0f} | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
                    f"{t['inference'] / floor[0]:.2f}/{t['train'] / floor[1]:.2f} |",
                    flush=True,
                )
            if "e3nn_pyg compiled" in first:
                cold = "/".join(f"{first['e3nn_pyg compiled'][s]:.1f}" for s in STEPS)
                notes.append(f"{kernel_name}: first calls of e3nn_pyg compiled {cold} s")
        for note in notes:
            print(f"- {note} (inference/train/force, compilation included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mol only, 1 thread, 3 repeats")
    parser.add_argument("--workloads", nargs="+", default=["mol", "big"], choices=["mol", "big"])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--compiled", action="store_true", help='add Kernel(engine="compiled") as a row'
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    try:
        import e3nn  # noqa: F401
    except ImportError:
        sys.exit("bench_conv needs e3nn==0.6.0 (a benchmark peer): pip install e3nn==0.6.0")
    repeats = {"mol": 7, "big": 5}
    workloads, threads = args.workloads, args.threads
    if args.quick:
        repeats, workloads, threads = {"mol": 3, "big": 3}, ["mol"], [1]
    print(f"# bench_conv: torch {torch.__version__}, float32, CPU")
    names = (
        ["e3nn_pyg", "e3nn_pyg compiled", "e3nn 0.6"] if args.compiled else ["e3nn_pyg", "e3nn 0.6"]
    )
    for n in threads:
        with_memory = not args.no_memory and n == threads[0]
        run(workloads, args.kernels, n, repeats, with_memory, names)


if __name__ == "__main__":
    main()
