"""Inference speed of EquivariantNet's artifacts: the Python model, its torch.export program
and its AOTInductor package.

The model of ``bench_model.py`` (the training CLI's defaults), in eval mode, on the same
batches of 32 QM9 molecules (``qm9pack`` when installed, else the package's fixture), in
two variants: **energy** (the QM9 model, under ``torch.no_grad``) and **energy + forces**
(the same parameters with ``derivative=True``: the Python model takes the forces by
autograd, the artifacts compute them inside). The artifacts
(:func:`e3nn_pyg.export.save_model`) are saved and loaded back as users load them:
``torch.export.load(path).module()`` and ``torch._inductor.aoti_load_package(path)``; their
convolutions are the native operators, like the Python model's. Every artifact's outputs
are checked against the model before timing. The contenders alternate; the table prints
the median over ``--repeats`` measurements of molecules per second, and each one's ratio
to the Python model.

    python benchmarks/bench_export.py              # 1 thread, 8 batches, 5 repeats
    python benchmarks/bench_export.py --no-aoti    # without the AOTInductor packages
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_model import batches, force_twin, models

from e3nn_pyg.export import save_model
from e3nn_pyg.models import EquivariantNet


def artifacts(model: EquivariantNet, folder: Path, aoti: bool) -> dict:
    """The model and its artifacts, loaded back from files, as callables ``(z, pos, batch)``."""
    exported = save_model(model, folder / f"{id(model)}.pt2")
    program = torch.export.load(exported).module()
    contenders = {"Python model": model, "torch.export program": program}
    if aoti:
        package = save_model(model, folder / f"{id(model)}-aoti.pt2", aoti=True)
        contenders["AOTInductor package"] = torch._inductor.aoti_load_package(str(package))
    return contenders


def outputs(run, batch, forces: bool) -> list[torch.Tensor]:
    """The energy (and forces) of a batch; autograd for the Python force model."""
    if forces and isinstance(run, EquivariantNet):
        pos = batch.pos.clone().requires_grad_()
        return [t.detach() for t in run(batch.z, pos, batch.batch)]
    with torch.no_grad():
        result = run(batch.z, batch.pos, batch.batch)
    return list(result) if isinstance(result, (tuple, list)) else [result]


def measure(contenders: dict, data: list, forces: bool, repeats: int) -> dict[str, float]:
    """Seconds per pass over ``data`` of every contender (median of ``repeats``), after a
    check that each gives the Python model's outputs."""
    reference = [outputs(contenders["Python model"], batch, forces) for batch in data]
    for name, run in contenders.items():
        for batch, expected in zip(data, reference):
            for got, want in zip(outputs(run, batch, forces), expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=name)
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():  # alternate the contenders
            start = time.perf_counter()
            for batch in data:
                outputs(run, batch, forces)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-aoti", dest="aoti", action="store_false",
                        help="skip the AOTInductor packages (minutes of compilation)")  # fmt: skip
    args = parser.parse_args()
    source = "qm9pack" if importlib.util.find_spec("qm9pack") else "fixture"
    data = batches(args.batches, source)
    model = models()["EquivariantNet"].eval()
    molecules = sum(batch.num_graphs for batch in data)
    print(f"# bench_export: torch {torch.__version__}, float32, CPU, molecules from {source}")
    with tempfile.TemporaryDirectory() as folder:  # (the packages are read while they run)
        variants = {
            forces: artifacts(
                force_twin(model).eval() if forces else model, Path(folder), args.aoti
            )
            for forces in (False, True)
        }
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"\n## {threads} thread(s): {len(data)} batches of 32, median of {args.repeats}")
            print("| artifact | energy mol/s | energy + forces mol/s | vs Python model |")
            print("|---|---|---|---|")
            seconds = {forces: measure(runs, data, forces, args.repeats)
                       for forces, runs in variants.items()}  # fmt: skip
            for name in variants[False]:
                rates = [molecules / seconds[forces][name] for forces in (False, True)]
                ratios = [seconds[f]["Python model"] / seconds[f][name] for f in (False, True)]
                print(f"| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
                      f"{ratios[0]:.2f} / {ratios[1]:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
