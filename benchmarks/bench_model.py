"""Molecules per second of a training step: EquivariantNet vs e3nn 0.6 vs PyG's SchNet.

Three models of the size ``make demo`` trains, on the same batches of 32 QM9 molecules
(``qm9pack`` when installed, else the package's 297-molecule fixture, whose molecules are
smaller), one AdamW step each:

- **EquivariantNet**: ``e3nn_pyg.models.EquivariantNet`` with the training CLI's defaults
  (``32x0e+16x1o+8x2e``, 3 layers, channel-wise kernels, Bessel radial model 8 -> 64);
- **e3nn 0.6 network**: the same network written with e3nn 0.6 modules, as its
  ``nn.models.v2106`` examples do: per layer a ``'uvu'`` ``o3.TensorProduct`` of the
  features with ``o3.spherical_harmonics`` (weights from a ``FullyConnectedNet`` on the
  same Bessel basis), summed at the targets, then ``o3.Linear`` (convolution and
  self-interaction) into a ``Gate``;
- **SchNet**: ``torch_geometric.nn.SchNet`` of the demo's size (64 channels, 3
  interactions, 25 Gaussians, cutoff 5 Å);
- **EquivariantNet, compiled**: the same parameters through
  :func:`e3nn_pyg.compile_model` (one graph, the native convolution operators inside);
  for the energy + forces step a ``derivative=True`` twin that computes the forces in its
  forward (the compiler cannot differentiate a compiled backward again). Compilation
  happens in the warm-up, outside the measurement.

Steps: **energy** (MSE of the energy, backward, optimizer step) and **energy + forces**
(forces = -dE/dpos with ``create_graph=True``, MSE of both, backward: the double backward
of force training). The contenders alternate, each measurement covers ``--batches``
batches, and the table prints the median over ``--repeats`` measurements of molecules
per second, and each model's ratio to EquivariantNet's.

    python benchmarks/bench_model.py                 # 1 thread, 8 batches, 5 repeats
    python benchmarks/bench_model.py --threads 1 2 --profile
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import SchNet

from e3nn_pyg.compilation import compile_model
from e3nn_pyg.datasets import QM9Pack
from e3nn_pyg.models import EquivariantNet, RadiusInteractionGraph, SchNetInteractionGraph
from e3nn_pyg.models.equivariant_net import layer_representations
from e3nn_pyg.training.config import TrainConfig

BATCH_SIZE = 32
AVG_NUM_NEIGHBORS = 15.6  # QM9 at 5 Å
DEFAULTS = TrainConfig()


def batches(count: int, source: str) -> list:
    dataset = QM9Pack(root=f"/tmp/e3nn_pyg_bench_{source}", source=source)
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(dataset), generator=generator)[: count * BATCH_SIZE]
    return list(DataLoader(dataset[index], batch_size=BATCH_SIZE))


class E3nnNetwork(nn.Module):
    """EquivariantNet's architecture written with e3nn 0.6 modules (see the docstring)."""

    def __init__(self, hidden: str, num_layers: int, cutoff: float, num_basis: int, h: int):
        super().__init__()
        from e3nn import o3
        from e3nn.nn import FullyConnectedNet, Gate

        self.cutoff, self.num_basis = cutoff, num_basis
        lmax = o3.Irreps(hidden).lmax
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        scalars = o3.Irreps(hidden).count("0e")
        self.embedding = nn.Embedding(100, scalars)
        self.layers = nn.ModuleList()
        irreps_in = o3.Irreps(f"{scalars}x0e")
        for rs_out in layer_representations(hidden, lmax, num_layers):
            irreps_out = o3.Irreps(str(rs_out))
            gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
            irreps_scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
            gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
            gate = Gate(
                irreps_scalars, [torch.nn.functional.silu] * len(irreps_scalars),
                gates, [torch.sigmoid] * len(gates), gated,
            )  # fmt: skip
            mid, instructions = [], []
            for i, (mul, ir_in) in enumerate(irreps_in):
                for j, (_, ir_sh) in enumerate(self.irreps_sh):
                    for ir in ir_in * ir_sh:
                        if ir in gate.irreps_in:
                            instructions.append((i, j, len(mid), "uvu", True))
                            mid.append((mul, ir))
            tp = o3.TensorProduct(
                irreps_in, self.irreps_sh, o3.Irreps(mid), instructions,
                shared_weights=False, internal_weights=False,
            )  # fmt: skip
            layer = nn.Module()
            layer.tp = tp
            layer.fc = FullyConnectedNet([num_basis, h, tp.weight_numel], torch.nn.functional.silu)
            layer.linear = o3.Linear(o3.Irreps(mid), gate.irreps_in)
            layer.self_interaction = o3.Linear(irreps_in, gate.irreps_in)
            layer.gate = gate
            self.layers.append(layer)
            irreps_in = gate.irreps_out
        self.readout = nn.Sequential(
            nn.Linear(scalars, scalars // 2), nn.SiLU(), nn.Linear(scalars // 2, 1)
        )
        self.graph = RadiusInteractionGraph(cutoff)

    def forward(self, z, pos, batch):
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace

        edge_index, _ = self.graph(pos, batch)
        src, dst = edge_index
        edge_vec = pos[src] - pos[dst]  # [E, 3]
        sh = o3.spherical_harmonics(self.irreps_sh, edge_vec, True, normalization="component")
        basis = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, self.cutoff, self.num_basis, basis="bessel", cutoff=True
        )  # [E, num_basis]
        x = self.embedding(z)
        for layer in self.layers:
            messages = layer.tp(x[src], sh, layer.fc(basis))  # [E, dim(mid)]
            summed = messages.new_zeros(x.shape[0], messages.shape[1]).index_add(0, dst, messages)
            h = layer.linear(summed / math.sqrt(AVG_NUM_NEIGHBORS)) + layer.self_interaction(x)
            x = layer.gate(h * math.sqrt(0.5))
        energy = self.readout(x)  # [N, 1]
        return energy.new_zeros(int(batch.max()) + 1, 1).index_add(0, batch, energy)


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    model, baseline = DEFAULTS.model, DEFAULTS.baseline
    ours = EquivariantNet(
        model["hidden_Rs"], num_layers=model["num_layers"], cutoff=model["cutoff"],
        num_basis=model["num_basis"], radial_hidden=model["radial_hidden"],
        radial_layers=model["radial_layers"], kernel_mode=model["kernel_mode"],
        avg_num_neighbors=AVG_NUM_NEIGHBORS,
    )  # fmt: skip
    e3nn_net = E3nnNetwork(
        model["hidden_Rs"].replace(" ", ""), model["num_layers"], model["cutoff"],
        model["num_basis"], model["radial_hidden"],
    )  # fmt: skip
    schnet = SchNet(
        hidden_channels=baseline["hidden_channels"], num_filters=baseline["num_filters"],
        num_interactions=baseline["num_interactions"], num_gaussians=baseline["num_gaussians"],
        cutoff=DEFAULTS.baseline_cutoff,
        interaction_graph=SchNetInteractionGraph(DEFAULTS.baseline_cutoff),
    )  # fmt: skip
    return {"EquivariantNet": ours, "e3nn 0.6 network": e3nn_net, "SchNet": schnet,
            "EquivariantNet, compiled": Compiled(ours)}  # fmt: skip


def force_twin(model: EquivariantNet) -> EquivariantNet:
    """``model`` (of :func:`models`) with ``derivative=True``, sharing its parameters."""
    config = DEFAULTS.model
    twin = EquivariantNet(
        config["hidden_Rs"], num_layers=config["num_layers"], cutoff=config["cutoff"],
        num_basis=config["num_basis"], radial_hidden=config["radial_hidden"],
        radial_layers=config["radial_layers"], kernel_mode=config["kernel_mode"],
        avg_num_neighbors=AVG_NUM_NEIGHBORS, derivative=True,
    )  # fmt: skip
    twin.load_state_dict(model.state_dict())
    for mine, theirs in zip(twin.parameters(), model.parameters()):
        mine.data = theirs.data  # one set of parameters
    return twin.train(model.training)


class Compiled(nn.Module):
    """The compiled forms of a model: as it is for the energy step, and its
    :func:`force_twin` whose forward gives the forces too."""

    def __init__(self, model: EquivariantNet) -> None:
        super().__init__()
        self.energy_model = compile_model(model)
        self.force_model = compile_model(force_twin(model))


def training_step(model: nn.Module, data: list, forces: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)  # (of both twins: shared)

    def run() -> None:
        for batch in data:
            optimizer.zero_grad()
            pos = batch.pos.detach().requires_grad_(forces)
            if isinstance(model, Compiled):
                run_model = model.force_model if forces else model.energy_model
                outputs = run_model(batch.z, pos, batch.batch)
                energy, gradient = outputs if forces else (outputs, None)
            else:
                energy = model(batch.z, pos, batch.batch)  # [G, 1]
                if forces:
                    (gradient,) = torch.autograd.grad(energy.sum(), pos, create_graph=True)
            loss = energy.pow(2).mean()
            if forces:
                loss = loss + gradient.pow(2).mean()
            loss.backward()
            optimizer.step()

    return run


def measure(threads: int, data: list, repeats: int, profile: bool) -> None:
    torch.set_num_threads(threads)
    contenders = models()
    molecules = sum(batch.num_graphs for batch in data)
    print(f"\n## {threads} thread(s): {len(data)} batches of {BATCH_SIZE} molecules, "
          f"{sum(b.num_nodes for b in data) / len(data):.0f} atoms and "
          f"{molecules} molecules; median of {repeats}")  # fmt: skip
    print("| model | energy step mol/s | energy + forces mol/s | vs EquivariantNet |")
    print("|---|---|---|---|")
    rates = {}
    for name in contenders:
        rates[name] = {}
    for forces in (False, True):
        runs = {name: training_step(model, data, forces) for name, model in contenders.items()}
        for run in runs.values():  # warm-up
            run()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():  # alternate the contenders
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name in runs:
            rates[name][forces] = molecules / statistics.median(times[name])
    ours = rates["EquivariantNet"]
    for name, rate in rates.items():
        print(
            f"| {name} | {rate[False]:,.0f} | {rate[True]:,.0f} | "
            f"{rate[False] / ours[False]:.2f} / {rate[True] / ours[True]:.2f} |",
            flush=True,
        )
    if profile:
        from torch.profiler import profile as profiler

        for forces in (False, True):
            run = training_step(contenders["EquivariantNet"], data, forces)
            run()
            with profiler() as prof:
                run()
            print(f"\nEquivariantNet, {'energy + forces' if forces else 'energy'} step:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="add EquivariantNet's profiles")
    args = parser.parse_args()
    try:
        import e3nn  # noqa: F401
    except ImportError:
        sys.exit("bench_model needs e3nn==0.6.0 (a benchmark peer): pip install e3nn==0.6.0")
    # qm9pack's own import can fail (pkg_resources): QM9Pack reads its data files directly
    source = "qm9pack" if importlib.util.find_spec("qm9pack") else "fixture"
    print(f"# bench_model: torch {torch.__version__}, float32, CPU, molecules from {source}")
    data = batches(args.batches, source)
    for threads in args.threads:
        measure(threads, data, args.repeats, args.profile)


if __name__ == "__main__":
    main()
