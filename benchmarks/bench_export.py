"""Inference time of EquivariantNet: the Python model against its torch.export program.

The model of ``bench_model.py`` (the training CLI's defaults), in eval mode under
``torch.no_grad``, on the same batches of 32 QM9 molecules (``qm9pack`` when installed,
else the package's fixture); the exported program (:func:`e3nn_pyg.compilation.export_model`,
saved and loaded back with ``torch.export.load``) runs the convolutions on their per-edge
path, the Python model on the native engine. The two alternate; the table prints the
median over ``--repeats`` measurements of molecules per second.

    python benchmarks/bench_export.py            # 1 thread, 8 batches, 5 repeats
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_model import batches, models

from e3nn_pyg.compilation import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    source = "qm9pack" if importlib.util.find_spec("qm9pack") else "fixture"
    data = batches(args.batches, source)
    model = models()["EquivariantNet"].eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt2"
        torch.export.save(export_model(model), path)
        exported = torch.export.load(path).module()
    contenders = {"Python model (native engine)": model, "torch.export program": exported}
    molecules = sum(batch.num_graphs for batch in data)
    print(f"# bench_export: torch {torch.__version__}, float32, CPU, molecules from {source}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n## {threads} thread(s): {len(data)} batches of 32, median of {args.repeats}")
        print("| model | inference mol/s | vs Python model |")
        print("|---|---|---|")
        times = {name: [] for name in contenders}
        with torch.no_grad():
            for run in contenders.values():  # warm-up
                for batch in data:
                    run(batch.z, batch.pos, batch.batch)
            for _ in range(args.repeats):
                for name, run in contenders.items():  # alternate the contenders
                    start = time.perf_counter()
                    for batch in data:
                        run(batch.z, batch.pos, batch.batch)
                    times[name].append(time.perf_counter() - start)
        rates = {name: molecules / statistics.median(t) for name, t in times.items()}
        first = next(iter(rates.values()))
        for name, rate in rates.items():
            print(f"| {name} | {rate:,.0f} | {rate / first:.2f} |", flush=True)


if __name__ == "__main__":
    main()
