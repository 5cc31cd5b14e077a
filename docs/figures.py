"""Draw the documentation's figures from the package itself (run by ``conf.py`` at build time).

- ``radial_bases.png``: the three radial bases and an untrained radial model on each;
- ``spherical_harmonics.png``: the real spherical harmonics :math:`Y^l_m`, :math:`l \\le 3`;
- ``kernel.png``: the entries of a kernel matrix :math:`K(r)` over the directions, and along
  one direction as a function of :math:`|r|`;
- ``learning_curves.png``: the validation force MAE against training seconds of
  ``benchmarks/bench_learning.py``'s contenders, from its results committed as
  ``docs/_static/bench_learning.json`` (without that file, a note that says how to make it).

    python docs/figures.py [OUT_DIR]     # default: docs/_generated
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.colors import Normalize

from e3nn_pyg.kernel import Kernel
from e3nn_pyg.o3 import spherical_harmonics
from e3nn_pyg.radial import (
    BesselBasis,
    BesselRadialModel,
    CosineBasis,
    CosineBasisModel,
    GaussianBasis,
    GaussianRadialModel,
    polynomial_cutoff,
)

F64 = torch.float64
SEED = 0
DPI = 110
MAX_RADIUS = 3.0
NUMBER_OF_BASIS = 6
DOCS = Path(__file__).resolve().parent
BENCH_RESULTS = DOCS / "_static" / "bench_learning.json"
BENCH_SCRIPT = DOCS.parent / "benchmarks" / "bench_learning.py"


def _sphere(n_polar: int, n_azimuth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit vectors on a (polar, azimuth) grid, the polar axis being y as in
    docs/conventions.md: ``cos θ = y``, ``φ = atan2(x, z)``; returns (θ, φ, vectors)."""
    theta = torch.linspace(0.0, math.pi, n_polar, dtype=F64)  # [P]
    phi = torch.linspace(-math.pi, math.pi, n_azimuth, dtype=F64)  # [A]
    t, p = torch.meshgrid(theta, phi, indexing="ij")  # [P, A]
    vectors = torch.stack([t.sin() * p.sin(), t.cos(), t.sin() * p.cos()], dim=-1)  # [P, A, 3]
    return theta, phi, vectors


def radial_bases(out: Path) -> None:
    """Top: the bases B_b(r); bottom: the outputs R_c(r) of an untrained model on each."""
    r = torch.linspace(0.0, 1.2 * MAX_RADIUS, 600, dtype=F64)  # [600]
    bases = [
        ("CosineBasis", CosineBasis, CosineBasisModel),
        ("GaussianBasis", GaussianBasis, GaussianRadialModel),
        ("BesselBasis", BesselBasis, BesselRadialModel),
    ]
    envelope = polynomial_cutoff(r, MAX_RADIUS)  # [600]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.2), sharex=True)
    for column, (name, basis_class, model_class) in enumerate(bases):
        basis = basis_class(MAX_RADIUS, NUMBER_OF_BASIS).to(F64)
        with torch.no_grad():
            values = basis(r)  # [600, NUMBER_OF_BASIS]
        top, bottom = axes[0, column], axes[1, column]
        for b in range(NUMBER_OF_BASIS):
            top.plot(r, values[:, b], lw=1.2, label=f"$B_{{{b + 1}}}$")
        top.set_title(f"{name}({MAX_RADIUS:g}, {NUMBER_OF_BASIS})")

        torch.manual_seed(SEED)
        model = model_class(
            4, max_radius=MAX_RADIUS, number_of_basis=NUMBER_OF_BASIS, h=32, L=1
        ).to(F64)
        with torch.no_grad():
            weights = model(r)  # [600, 4]
        for c in range(weights.shape[1]):
            bottom.plot(r, weights[:, c], lw=1.2, label=f"$R_{{{c + 1}}}$")
        scale = weights.abs().max().item()
        bottom.plot(r, scale * envelope, color="0.4", ls=":", lw=1.0, label="envelope $u$")
        bottom.set_title(f"{model_class.__name__}(4, ...), untrained")
        bottom.set_xlabel("$r$")
        for ax in (top, bottom):
            ax.axvline(MAX_RADIUS, color="0.6", lw=0.8, ls="--")
            ax.axhline(0.0, color="0.85", lw=0.6)
        top.legend(fontsize=7, ncol=2)
        bottom.legend(fontsize=7)
    axes[0, 0].set_ylabel("basis $B_b(r)$")
    axes[1, 0].set_ylabel("radial weights $R_c(r)$")
    fig.suptitle(
        f"Radial bases and models (max_radius = {MAX_RADIUS:g}, dashed): every model's "
        "outputs vanish smoothly at the cutoff",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def spherical_harmonics_figure(out: Path, lmax: int = 3) -> None:
    """Surfaces :math:`|Y^l_m(\\hat r)|\\,\\hat r`, coloured by the sign of :math:`Y^l_m`."""
    _, _, vectors = _sphere(48, 96)  # [P, A, 3]
    values = spherical_harmonics(list(range(lmax + 1)), vectors)  # [P, A, (lmax+1)^2]
    columns = 2 * lmax + 1
    fig = plt.figure(figsize=(1.9 * columns, 2.0 * (lmax + 1)))
    colors = matplotlib.colormaps["coolwarm"]
    offset = 0
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            y = values[..., offset + m + l]  # [P, A]
            surface = vectors * y.abs().unsqueeze(-1)  # [P, A, 3]
            ax = fig.add_subplot(lmax + 1, columns, l * columns + (m + lmax) + 1, projection="3d")
            extent = y.abs().max().item()
            shade = colors(Normalize(-extent, extent)(y.numpy()))
            ax.plot_surface(
                surface[..., 0].numpy(),
                surface[..., 2].numpy(),
                surface[..., 1].numpy(),
                facecolors=shade,
                rstride=2,
                cstride=2,
                linewidth=0,
                antialiased=False,
                shade=False,
            )
            ax.set_box_aspect((1, 1, 1), zoom=1.4)
            for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                set_lim(-extent, extent)
            ax.set_axis_off()
            ax.view_init(elev=20, azim=-60)
            ax.set_title(f"$l={l},\\ m={m}$", fontsize=9, pad=-4)
        offset += 2 * l + 1
    fig.suptitle(
        "Real spherical harmonics $Y^l_m(\\hat r)$ ('component'): the surface "
        "$|Y^l_m|\\,\\hat r$, red > 0, blue < 0; the vertical axis is y (the polar axis)",
        fontsize=11,
    )
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=0, hspace=0.05)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def kernel_figure(out: Path) -> None:
    """A kernel from one vector to one vector (``1x1o -> 1x1o``: filters l_f = 0, 1, 2)."""
    torch.manual_seed(SEED)
    radial = partial(GaussianRadialModel, max_radius=MAX_RADIUS, number_of_basis=8, h=32, L=1)
    kernel = Kernel("1x1o", "1x1o", radial).to(F64)
    theta, phi, vectors = _sphere(90, 180)  # [P, A, 3]
    with torch.no_grad():
        on_sphere = kernel(vectors.reshape(-1, 3)).reshape(*vectors.shape[:2], 3, 3)  # [P, A, 3, 3]
        # from just above 0: at r = 0 only the l_f = 0 path survives (Y^{l>0}(0) = 0)
        r = torch.linspace(1e-3, 1.15 * MAX_RADIUS, 400, dtype=F64)  # [400]
        direction = torch.tensor([1.0, 2.0, 3.0], dtype=F64) / math.sqrt(14.0)  # [3]
        along = kernel(r.unsqueeze(-1) * direction)  # [400, 3, 3]

    fig = plt.figure(figsize=(13, 6.2))
    # columns: 3 maps, the colour bar, a gap, the line plot
    grid = fig.add_gridspec(3, 6, width_ratios=[1, 1, 1, 0.07, 0.25, 1.7], wspace=0.25, hspace=0.35)
    extent = on_sphere.abs().max().item()
    norm = Normalize(-extent, extent)
    names = "xyz"
    image = None
    for i in range(3):
        for j in range(3):
            ax = fig.add_subplot(grid[i, j])
            image = ax.pcolormesh(
                phi.numpy(), theta.numpy(), on_sphere[..., i, j].numpy(), cmap="RdBu_r", norm=norm
            )
            ax.invert_yaxis()
            ax.set_title(f"$K_{{{names[i]}{names[j]}}}$", fontsize=9)
            ax.set_xticks([-math.pi, 0, math.pi], ["$-\\pi$", "0", "$\\pi$"], fontsize=7)
            ax.set_yticks([0, math.pi / 2, math.pi], ["0", "$\\pi/2$", "$\\pi$"], fontsize=7)
            if i == 2:
                ax.set_xlabel("$\\varphi = $ atan2(x, z)", fontsize=8)
            if j == 0:
                ax.set_ylabel("$\\theta$ (from +y)", fontsize=8)
    fig.colorbar(image, cax=fig.add_subplot(grid[:, 3]))

    ax = fig.add_subplot(grid[:, 5])
    for i in range(3):
        for j in range(3):
            ax.plot(r, along[:, i, j], lw=1.1, label=f"$K_{{{names[i]}{names[j]}}}$")
    ax.axvline(MAX_RADIUS, color="0.6", lw=0.8, ls="--")
    ax.axhline(0.0, color="0.85", lw=0.6)
    ax.set_xlabel("$|r|$ along $\\hat r = (1, 2, 3) / \\sqrt{14}$")
    ax.set_title("the same entries along one direction")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    fig.suptitle(
        f"Kernel('1x1o', '1x1o', GaussianRadialModel), untrained: $K(r)$ at $|r| = 1$ over "
        f"the directions (left) and as a function of $|r|$ (right; cutoff {MAX_RADIUS:g})",
        fontsize=11,
    )
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def learning_curves_figure(out: Path) -> None:
    """The learning curves of the committed benchmark results, drawn by the benchmark's
    own plot function; a note when no results are committed."""
    if BENCH_RESULTS.exists():
        spec = importlib.util.spec_from_file_location("bench_learning", BENCH_SCRIPT)
        bench = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = bench  # its dataclasses look their module up there
        spec.loader.exec_module(bench)
        results = json.loads(BENCH_RESULTS.read_text())
        bench.plot_curves(results["runs"], out, results["protocol"]["budget_seconds"])
        return
    fig, ax = plt.subplots(figsize=(7.0, 1.4))
    ax.axis("off")
    ax.text(0.5, 0.5, "No measured learning curves are committed yet: run `make bench-learning`\n"
            "and copy runs/bench_learning/results.json to docs/_static/bench_learning.json.",
            ha="center", va="center")  # fmt: skip
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


FIGURES = {
    "radial_bases.png": radial_bases,
    "spherical_harmonics.png": spherical_harmonics_figure,
    "kernel.png": kernel_figure,
    "learning_curves.png": learning_curves_figure,
}


def main(out: Path) -> list[Path]:
    """Draw every figure into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with torch.random.fork_rng():
        for name, draw in FIGURES.items():
            draw(out / name)
            paths.append(out / name)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "_generated"
    for path in main(target):
        print(path)
