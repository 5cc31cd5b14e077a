r"""The "Nuts and Bolts of e3nn" tutorial on e3nn_pyg, then applied to molecules.

Part 1 builds the tutorial's objects with the tutorial's own code (``e3nn`` renamed
``e3nn_pyg``): the benzene molecule, the cosine radial basis, ``RadialModel``, the kernel
``K``, the convolution and the two non-linearities.

Part 2 runs them the PyTorch Geometric way: on benzene as a ``Data(x, pos)``, then on a
``Batch`` of benzene, a rotated copy of it and a small random molecule, and measures the
equivariance of every step with :func:`e3nn_pyg.testing.equivariance_error`,

.. math::
    \max \big| f(g \cdot x,\ g \cdot \text{pos}) - g \cdot f(x, \text{pos}) \big|

for a random rotation, the inversion (only for representations with parity) and a
random translation. The tutorial's representations have no parity (``[(2, 0)]``), so the
same layers are also built with parities written out (``2x0e -> 4x0e+4x1o+4x2e``, the
same 24 paths) to measure the inversion.

Part 3 saves a figure: the tutorial's cosine basis and a few learned radial functions
:math:`R_c(r)` of the kernel.

Run it with ``make demo`` or ``python examples/nuts_and_bolts.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
import math
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch_geometric.data import Batch, Data

import e3nn_pyg
import e3nn_pyg.kernel
import e3nn_pyg.non_linearities as nl
import e3nn_pyg.non_linearities.norm_activation
import e3nn_pyg.point
import e3nn_pyg.point.operations
import e3nn_pyg.radial
from e3nn_pyg.non_linearities import rescaled_act
from e3nn_pyg.o3 import rand_rotation
from e3nn_pyg.testing import equivariance_error


def tutorial() -> dict:
    """The tutorial's cells, in order, with ``e3nn`` renamed ``e3nn_pyg``."""
    # Everything starts with a representation list: two scalar channels, H and C
    Rs = [(2, 0)]
    C_geo = torch.tensor(
        [[ 0.     ,  1.40272,  0.     ],
         [-1.21479,  0.70136,  0.     ],
         [-1.21479, -0.70136,  0.     ],
         [ 0.     , -1.40272,  0.     ],
         [ 1.21479, -0.70136,  0.     ],
         [ 1.21479,  0.70136,  0.     ]]
    )  # fmt: skip
    H_geo = torch.tensor(
        [[ 0.     ,  2.49029,  0.     ],
         [-2.15666,  1.24515,  0.     ],
         [-2.15666, -1.24515,  0.     ],
         [ 0.     , -2.49029,  0.     ],
         [ 2.15666, -1.24515,  0.     ],
         [ 2.15666,  1.24515,  0.     ]]
    )  # fmt: skip
    geometry = torch.cat([C_geo, H_geo], axis=-2)  # [12, 3]
    C_input = torch.tensor([[0.0, 1.0] for i in range(C_geo.shape[-2])])
    H_input = torch.tensor([[1.0, 0.0] for i in range(H_geo.shape[-2])])
    input = torch.cat([C_input, H_input])  # [12, 2]

    # Inside e3nn_pyg.radial.CosineBasisModel
    max_radius = 3.0
    number_of_basis = 3
    radii = torch.linspace(0, max_radius, steps=number_of_basis)
    step = radii[1] - radii[0]

    def basis(x):
        return x.div(step).add(1).relu().sub(2).neg().relu().add(1).mul(math.pi / 2).cos().pow(2)

    # RadialModel: every argument of CosineBasisModel except out_dim
    radial_layers = 2
    sp = rescaled_act.Softplus(beta=5)
    RadialModel = partial(
        e3nn_pyg.radial.CosineBasisModel,
        max_radius=max_radius,
        number_of_basis=number_of_basis,
        h=100,
        L=radial_layers,
        act=sp,
    )

    # The kernel: every argument except Rs_in and Rs_out
    sh = None
    K = partial(e3nn_pyg.kernel.Kernel, RadialModel=RadialModel, sh=sh)

    # The convolution: C for layer definitions, or built directly
    C = partial(e3nn_pyg.point.operations.Convolution, K)
    Rs_in = [(2, 0)]
    Rs_out = [(4, 0), (4, 1), (4, 2)]
    convolution = e3nn_pyg.point.operations.Convolution(K, Rs_in, Rs_out)

    # Non-linearities
    gated_block = nl.gated_block.GatedBlock(Rs_out, sp, rescaled_act.sigmoid)
    dimensionalities = [2 * L + 1 for mult, L in Rs_out for _ in range(mult)]
    norm_activation = nl.norm_activation.NormActivation(
        dimensionalities, rescaled_act.sigmoid, rescaled_act.sigmoid
    )
    return locals()


def small_molecule(num_atoms: int, generator: torch.Generator) -> Data:
    """Random atoms in a 2 Å ball, at least 1 Å apart, one-hot H/C features."""
    points: list[torch.Tensor] = []
    while len(points) < num_atoms:
        p = (2 * torch.rand(3, generator=generator) - 1) * 2.0
        if p.norm() <= 2.0 and all((p - q).norm() >= 1.0 for q in points):
            points.append(p)
    species = torch.randint(0, 2, (num_atoms,), generator=generator)
    return Data(x=torch.nn.functional.one_hot(species, 2).double(), pos=torch.stack(points))


def report(name: str, errors: dict[str, float]) -> None:
    cells = [f"{errors[k]:9.2e}" if k in errors else "      n/a" for k in PARTS]
    print(f"  {name:<44}" + "  ".join(cells))


PARTS = ("rotation", "parity", "translation")


def plot(t: dict, out: Path) -> None:
    """The tutorial's basis plot and a few learned radial functions R_c(r)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = torch.linspace(-t["max_radius"], t["max_radius"], 1000)
    with torch.no_grad():
        left.plot(x, t["basis"](x), color="k", label="basis(x), as in the tutorial")
        for c in t["radii"]:
            left.plot(x, t["basis"](x - c), ls="--", lw=0.8, label=f"centre {c:.1f} Å")
    left.set(title="cosine basis", xlabel="x (Å)")
    left.legend(fontsize=7)

    kernel = t["convolution"].kernel
    r = torch.linspace(0, t["max_radius"], 300)
    with torch.no_grad():
        radial = kernel.R(r)  # [300, n_path]
    shown = 0
    for pair in kernel.plan.pairs:  # paths (u, v = 0, l_f) of each block pair, u = 0, 1
        for u in range(min(2, pair.mul_out)):
            column = pair.weight_offset + u * pair.mul_in * len(pair.filters)  # [u, v=0, f=0]
            label = f"$l_i={pair.l_in}, l_f={pair.filters[0]}, l_o={pair.l_out}$, u={u}"
            right.plot(r, radial[:, column], label=label, lw=1.2, ls="-" if u == 0 else "--")
            shown += 1
    right.axhline(0, color="0.7", lw=0.5)
    right.set(
        title=f"radial functions R(r) of the kernel, untrained ({shown} of {kernel.n_path})",
        xlabel="r (Å)",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/nuts_and_bolts.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_default_dtype(torch.float64)  # as the tutorial does
    torch.manual_seed(args.seed)
    t = tutorial()
    convolution, gated_block, norm_activation = (
        t["convolution"],
        t["gated_block"],
        t["norm_activation"],
    )
    conv_gate = t["C"](t["Rs_in"], gated_block.Rs_in)  # the layer the tutorial's C is for
    print(f"e3nn_pyg {e3nn_pyg.__version__}: the tutorial's objects")
    print(f"  {convolution}")
    print(f"  {gated_block}  ({gated_block.Rs_in.dim} -> {gated_block.Rs_out.dim})")
    print(f"  {norm_activation}")

    # -- one molecule, the PyG way ---------------------------------------------------------
    benzene = Data(x=t["input"], pos=t["geometry"])
    out = convolution(benzene.x, benzene.pos)  # [12, 36]
    gated = gated_block(conv_gate(benzene.x, benzene.pos))  # [12, 36]
    normed = norm_activation(out)  # [12, 36]
    print("\nbenzene, Data(x=[12, 2], pos=[12, 3])")
    print(f"  convolution      -> {list(out.shape)}")
    print(f"  conv -> gate     -> {list(gated.shape)}  (conv to {gated_block.Rs_in.dim})")
    print(f"  conv -> norm act -> {list(normed.shape)}")

    # -- a batch: benzene, a rotated benzene, a random molecule ----------------------------
    generator = torch.Generator().manual_seed(args.seed)
    rotation = rand_rotation(dtype=torch.float64, generator=generator)
    rotated = Data(x=benzene.x, pos=benzene.pos @ rotation.T + torch.tensor([5.0, 0.0, 0.0]))
    batch = Batch.from_data_list([benzene, rotated, small_molecule(5, generator)])
    batch_out = convolution(batch.x, batch.pos, batch=batch.batch)  # [29, 36]
    batch_gated = gated_block(conv_gate(batch.x, batch.pos, batch=batch.batch))  # [29, 36]
    print(f"\nBatch of {batch.num_graphs} molecules, x={list(batch.x.shape)}, batch={batch}")
    print(f"  convolution      -> {list(batch_out.shape)}")
    print(f"  conv -> gate     -> {list(batch_gated.shape)}")
    d = e3nn_pyg.o3.rs_representation(convolution.Rs_out, rotation)
    copy_error = (batch_out[12:24] - out @ d.T).abs().max().item()
    print(f"  rotated copy vs D(R) benzene output: max error {copy_error:.2e}")

    # -- equivariance, measured ------------------------------------------------------------
    Rs_in, Rs_out = t["Rs_in"], t["Rs_out"]
    mol = [benzene.x, benzene.pos]
    print("\nequivariance errors (max abs, float64)      " + "  ".join(f"{p:>9}" for p in PARTS))
    report(
        "convolution, benzene",
        equivariance_error(convolution, mol, [Rs_in, "pos"], [Rs_out]),
    )
    report(
        "conv -> gate, benzene",
        equivariance_error(
            lambda x, p: gated_block(conv_gate(x, p)), mol, [Rs_in, "pos"], [Rs_out]
        ),
    )
    report(
        "conv -> norm activation, benzene",
        equivariance_error(
            lambda x, p: norm_activation(convolution(x, p)), mol, [Rs_in, "pos"], [Rs_out]
        ),
    )
    batched = [batch.x, batch.pos, batch.batch]
    report(
        "conv -> gate, batch of 3",
        equivariance_error(
            lambda x, p, b: gated_block(conv_gate(x, p, batch=b)),
            batched,
            [Rs_in, "pos", None],
            [Rs_out],
        ),
    )
    # the same layers with parities written out: 2x0e -> 4x0e + 4x1o + 4x2e (24 paths)
    Rs_in_p, Rs_out_p = "2x0e", "4x0e + 4x1o + 4x2e"
    gate_p = nl.gated_block.GatedBlock(Rs_out_p, t["sp"], rescaled_act.sigmoid)
    conv_p = t["C"](Rs_in_p, gate_p.Rs_in)
    report(
        "with parity: conv -> gate, batch of 3",
        equivariance_error(
            lambda x, p, b: gate_p(conv_p(x, p, batch=b)),
            batched,
            [Rs_in_p, "pos", None],
            Rs_out_p,
        ),
    )
    print("  (n/a: the tutorial's Rs [(2, 0)] ... have no parity, the inversion is undefined)")

    plot(t, args.out)
    print(f"\nplot of the cosine basis and the learned radial functions: {args.out}")
    return args.out


if __name__ == "__main__":
    main()
