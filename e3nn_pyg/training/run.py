r"""A whole run: data, the equivariant model and its baselines, the final table, files.

:func:`train` writes to ``config.out``:

- ``config.yaml``: the resolved configuration (rerun with ``--config``);
- ``equivariant_net/{best,last}.pt`` and ``schnet/{best,last}.pt``: checkpoints, with
  ``history.csv`` (and ``tensorboard/`` when installed) next to them;
- ``metrics.json``: test and validation MAEs of every model and baseline, sizes, times;
- ``test_predictions.csv``: the test molecules with their DFT value and every prediction;
- ``learning_curves.png`` and ``parity.png`` (a potential: ``parity_energy.png`` and
  ``parity_forces.png``).

:func:`evaluate`, :func:`predict_xyz` and :func:`export_checkpoint` use a checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from ..compilation import export_model
from ..elements import CHEMICAL_SYMBOLS, atomic_number
from ..models import EquivariantNet
from .checkpoint import build_model, load_checkpoint, model_from_checkpoint
from .config import BASELINE, MODEL, ConfigError, TrainConfig, write_yaml
from .data import (
    RunData,
    TargetStats,
    average_degree,
    fit_target_stats,
    load_data,
    read_structures_file,
    without_isolated_atoms,
)
from .distributed import Runtime, setup_runtime
from .loop import FitResult, Trainer, check_resumable_run, mean_absolute_error
from .plots import plot_learning_curves, plot_parity
from .tasks import (
    EVAL_BATCH_SIZE,
    PotentialTask,
    PropertyTask,
    predict,
)

__all__ = [
    "MODELS",
    "check_models",
    "evaluate",
    "export_checkpoint",
    "format_table",
    "predict_xyz",
    "read_xyz",
    "train",
]

#: name -> (kind, label in tables and plots)
MODELS = {"equivariant_net": ("equivariant", "EquivariantNet"), "schnet": ("schnet", "SchNet")}
_RUN_FILES = ("metrics.json", "test_predictions.csv", "learning_curves.png", "parity.png",
              "parity_energy.png", "parity_forces.png")  # fmt: skip
_MAX_COORDINATE = 1e6  # Å: float32 keeps distances of such coordinates to a few 0.01 Å

Log = Callable[[str], None]


def model_config(kind: str, config: TrainConfig, stats: TargetStats, degree: float) -> dict:
    """The constructor arguments of a model of the run: its section of the config, with the
    offsets fitted on the training set (and the forces of a potential)."""
    fitted = {"readout": stats.readout, "mean": stats.mean, "std": stats.std,
              "atomref": stats.atomref}  # fmt: skip
    if config.data is not None:
        fitted["derivative"] = True
    if kind == "schnet":
        arguments = BASELINE.arguments(config.baseline)
        return {**arguments, "cutoff": config.baseline_cutoff, **fitted}
    return {**MODEL.arguments(config.model), "avg_num_neighbors": round(degree, 3), **fitted}


def check_models(config: TrainConfig) -> None:
    """Build the run's models once, untrained, so that settings they refuse are reported
    before the data is loaded.

    Raises:
        ConfigError: naming the section and the model's own message.
    """
    model = {**MODEL.arguments(config.model), "readout": config.resolved_readout}
    checks = [("model", lambda: EquivariantNet(**model))]
    if config.baseline["name"] is not None:
        arguments = {**BASELINE.arguments(config.baseline), "cutoff": config.baseline_cutoff}
        checks.append(("baseline", lambda: build_model("schnet", arguments)))
    for section, build in checks:
        try:
            build()
        # PyG's SchNet checks nothing itself: IndexError for one Gaussian, ...
        except (TypeError, ValueError, IndexError, RuntimeError, ZeroDivisionError) as error:
            raise ConfigError(
                f"invalid {section} settings: {error or type(error).__name__}"
            ) from None


def _prepare_output(config: TrainConfig, resume: bool, overwrite: bool, runtime: Runtime) -> Path:
    """Check (every rank) and prepare (rank 0) the output folder."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder")
    previous = [out / name / "last.pt" for name in MODELS] + [out / "metrics.json"]
    if any(path.exists() for path in previous) and not (resume or overwrite):
        raise ConfigError(
            f"{out} already holds a run: pass --resume to continue it, --overwrite to replace "
            "it, or another --out"
        )
    if not runtime.is_main:
        runtime.barrier()  # rank 0 has prepared the folder
        return out
    if overwrite:
        for name in MODELS:
            for file in ("best.pt", "last.pt"):
                (out / name / file).unlink(missing_ok=True)
        for file in (*_RUN_FILES, "config.yaml"):
            (out / file).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create --out {out}: {error.strerror}") from None
    runtime.barrier()
    return out


def _composition(subset, stats: TargetStats) -> Tensor:
    """The per-element linear fit's prediction for every molecule of a subset, ``[M]``."""
    index = torch.as_tensor(subset.indices(), dtype=torch.long)
    slices = subset.slices["z"]
    counts = slices[index + 1] - slices[index]  # [M]
    z = torch.cat([subset._data.z[slices[i] : slices[i + 1]] for i in index.tolist()])
    batch = torch.repeat_interleave(torch.arange(len(index)), counts)  # [N]
    return stats.composition(z, batch, len(index))


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, log: Log = print
) -> dict[str, Any]:
    """Train the equivariant model (and the baseline), evaluate on the test set, write the
    files listed in the module docstring and return the metrics.

    Raises:
        ConfigError: for settings that cannot work (the message says what to fix).
        TrainingInterrupted: on Ctrl-C, after saving a checkpoint.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pick one")
    start = time.perf_counter()
    check_models(config)
    runtime = setup_runtime(config.device, config.dtype)
    log = runtime.logger(log)
    out = _prepare_output(config, resume, overwrite, runtime)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    names = ["equivariant_net"] + (["schnet"] if config.baseline["name"] == "schnet" else [])
    if resume:
        check_resumable_run(out, config, {name: MODELS[name][0] for name in names})
    if not runtime.is_main:
        runtime.barrier()  # rank 0 processes (and caches) the dataset first
    data = load_data(config, log=config.progress and runtime.is_main)
    if runtime.is_main:
        runtime.barrier()
    stats = fit_target_stats(data, config.resolved_readout)
    degree = average_degree(data.subset("train"), config.model["cutoff"])
    if runtime.is_main:
        write_yaml(config.to_dict(), out / "config.yaml")
    task = data.task
    what = (
        f"target {task.target.name} ({task.target.description}, {task.target.unit})"
        if isinstance(task, PropertyTask)
        else f"energies and forces (force RMS {stats.std * 1000:.0f} meV/Å)"
    )
    log(
        f"{config.resolved_dataset}: {data.num_structures} structures (train {len(data.train)}, "
        f"val {len(data.val)}, test {len(data.test)}), {what}, readout {stats.readout}, "
        f"{degree:.1f} neighbours within {config.model['cutoff']} Å on average "
        f"({time.perf_counter() - start:.1f} s)"
    )

    if "schnet" in names and data.periodic:
        raise ConfigError(
            f"{config.data} holds periodic structures: PyG's SchNet baseline takes molecules "
            "only; train without --baseline"
        )
    fits: dict[str, FitResult] = {}
    for name in names:
        kind, label = MODELS[name]
        lr = config.baseline["lr"] if kind == "schnet" else config.lr
        try:
            arguments = model_config(kind, config, stats, degree)
            trainer = Trainer(
                label, kind, arguments, data, stats, config, out / name, lr, log, runtime
            )
            fits[name] = trainer.fit(resume=resume)
        except ValueError as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"invalid {label} settings: {error}") from None

    if not runtime.is_main:  # rank 0 evaluates and writes the run's files
        return {}
    if isinstance(task, PotentialTask):
        metrics = _potential_report(fits, data, stats, config, out, runtime)
    else:
        metrics = _property_report(fits, data, stats, config, out, runtime)
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics["config"] = config.to_dict()
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2, default=float)
    log("")
    log(format_table(metrics))
    if metrics["plots"]:
        log(f"plots: {', '.join(metrics['plots'])}")
    log(f"metrics: {out / 'metrics.json'}; checkpoints: {out}/<model>/best.pt")
    return metrics


def _fit_record(name: str, fit: FitResult, out: Path) -> dict[str, Any]:
    return {
        "label": MODELS[name][1],
        "best_val_mae": fit.best_val_mae,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "train_seconds": fit.seconds,
        "stop_reason": fit.stop_reason,
        "num_parameters": fit.num_parameters,
        "checkpoint": str(out / name / "best.pt"),
    }


def _run_record(config: TrainConfig, data: RunData, runtime: Runtime) -> dict[str, Any]:
    return {
        "dataset": config.resolved_dataset,
        "num_molecules": data.num_structures,
        "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "seed": config.seed,
        "world_size": runtime.world_size,
        "global_batch_size": config.batch_size,
        "device": str(runtime.device),
        "dtype": config.dtype,
    }


def potential_metrics(model: nn.Module, dataset, task: PotentialTask) -> dict[str, Any]:
    """Energy and force errors of a potential on a dataset view: ``energy_mae`` (meV),
    ``energy_mae_per_atom`` (meV/atom), ``forces_mae`` and ``forces_rmse`` (meV/Å), and
    ``forces_mae_per_element`` (meV/Å by element symbol)."""
    return _error_metrics(task.errors(model, dataset), task)


def _error_metrics(errors: dict[str, Tensor], task: PotentialTask) -> dict[str, Any]:
    metrics: dict[str, Any] = task.eval_metrics(task.error_sums(errors))
    z, error = errors["z"], errors["forces"].abs()  # [N], [N, 3]
    metrics["forces_mae_per_element"] = {
        CHEMICAL_SYMBOLS[int(element)]: float(error[z == element].mean()) * task.report_scale
        for element in torch.unique(z)
    }
    return metrics


def _potential_report(fits, data, stats, config, out, runtime) -> dict[str, Any]:
    task, test = data.task, data.subset("test")
    y_test = data.targets("test")  # [M] eV
    results: dict[str, dict[str, Any]] = {}
    energies, force_components = {}, {}
    for name, fit in fits.items():
        label = MODELS[name][1]
        errors = task.errors(fit.model, test)
        metrics = _error_metrics(errors, task)
        results[name] = {**_fit_record(name, fit, out), **metrics}
        results[name]["test_mae"] = metrics["forces_mae"]
        energies[label] = y_test + errors["energy"]  # [M] the predictions
        force_components[label] = (errors["forces_reference"] + errors["forces"]).reshape(-1)
    reference_forces = errors["forces_reference"]  # [N, 3], the same for every model
    composition = _composition(test, stats)
    results["per_element_linear"] = {
        "label": "per-element linear fit",
        "energy_mae": mean_absolute_error(composition, y_test, task.report_scale),
        # its forces are 0: their MAE is the mean |F| of the test set
        "test_mae": float(reference_forces.abs().mean()) * task.report_scale,
    }
    energy_parity, forces_parity = out / "parity_energy.png", out / "parity_forces.png"
    curves = out / "learning_curves.png"
    histories = {MODELS[name][1]: fit.history for name, fit in fits.items()}
    plotted = plot_learning_curves(histories, curves, task.score_name, task.report_unit)
    plotted &= plot_parity(energies, y_test, energy_parity, "energy", "eV", "meV",
                           task.report_scale)  # fmt: skip
    plotted &= plot_parity(force_components, reference_forces.reshape(-1),
                           forces_parity, "force component", "eV/Å", "meV/Å",
                           task.report_scale)  # fmt: skip
    _write_predictions(out / "test_predictions.csv", test, y_test, energies, "eV")
    return {
        **_run_record(config, data, runtime),
        "target": "forces",
        "test_dataset": os.path.basename(config.test_data or config.data),
        "unit": "eV/Å",
        "mae_unit": task.report_unit,
        "results": results,
        "plots": [str(curves), str(energy_parity), str(forces_parity)] if plotted else [],
    }


def _property_report(fits, data, stats, config, out, runtime) -> dict[str, Any]:
    target = data.task.target
    test = data.subset("test")
    y_test = data.targets("test")
    scale = target.report_scale
    predictions = {MODELS[name][1]: predict(fit.model, test) for name, fit in fits.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, fit in fits.items():
        label = MODELS[name][1]
        results[name] = {
            "test_mae": mean_absolute_error(predictions[label], y_test, scale),
            **_fit_record(name, fit, out),
        }
    y_val = data.targets("val")
    if stats.atomref is not None:
        results["per_element_linear"] = {
            "label": "per-element linear fit",
            "test_mae": mean_absolute_error(_composition(test, stats), y_test, scale),
            "val_mae": mean_absolute_error(_composition(data.subset("val"), stats), y_val, scale),
        }
    results["mean_predictor"] = {
        "label": "mean predictor",
        "test_mae": mean_absolute_error(torch.full_like(y_test, stats.train_mean), y_test, scale),
        "val_mae": mean_absolute_error(torch.full_like(y_val, stats.train_mean), y_val, scale),
    }

    curves, parity = out / "learning_curves.png", out / "parity.png"
    histories = {MODELS[name][1]: fit.history for name, fit in fits.items()}
    line = results.get("per_element_linear", results["mean_predictor"])
    reference_lines = {f"{line['label']} (validation)": line["val_mae"]}
    plotted = plot_learning_curves(histories, curves, target.name, target.report_unit,
                                   reference_lines)  # fmt: skip
    plotted &= plot_parity(predictions, y_test, parity, target.name, target.unit,
                           target.report_unit, scale)  # fmt: skip
    _write_predictions(out / "test_predictions.csv", test, y_test, predictions, target.unit)
    return {
        **_run_record(config, data, runtime),
        "target": target.name,
        "unit": target.unit,
        "mae_unit": target.report_unit,
        "results": results,
        "plots": [str(curves), str(parity)] if plotted else [],
    }


def format_table(metrics: dict[str, Any]) -> str:
    """The final table of a run's ``metrics.json``."""
    unit = metrics["mae_unit"]
    lines = [
        f"Test MAE of {metrics['target']} on {metrics['split']['test']} "
        f"{metrics.get('test_dataset', metrics['dataset'])} structures (trained on "
        f"{metrics['split']['train']}):",
        f"  {'model':<24} {'test MAE':>14} {'parameters':>11} {'epochs':>7} {'time':>8}",
    ]
    for result in metrics["results"].values():
        mae = f"{result['test_mae']:.1f} {unit}"
        parameters = f"{result['num_parameters']:,}" if "num_parameters" in result else "-"
        epochs = str(result.get("epochs", "-"))
        seconds = f"{result['train_seconds']:.0f} s" if "train_seconds" in result else "-"
        lines.append(f"  {result['label']:<24} {mae:>14} {parameters:>11} {epochs:>7} {seconds:>8}")
    return "\n".join(lines)


def _write_predictions(
    path: Path, test, y: Tensor, predictions: dict[str, Tensor], unit: str
) -> None:
    names = [getattr(test[i], "name", None) or str(i) for i in range(len(test))]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", f"dft_{unit}", *(f"{label}_{unit}" for label in predictions)])
        for i, name in enumerate(names):
            row = [name, f"{float(y[i]):.6f}"]
            row += [f"{float(p[i]):.6f}" for p in predictions.values()]
            writer.writerow(row)


def _load(checkpoint: str | os.PathLike) -> tuple[dict[str, Any], nn.Module]:
    payload = load_checkpoint(checkpoint)
    return payload, model_from_checkpoint(payload, checkpoint)


def evaluate(
    checkpoint: str | os.PathLike,
    split: str = "test",
    data_root: str | None = None,
    data: str | os.PathLike | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Errors of a checkpoint on a split of the data it was trained on, or (a potential) on
    the structures of a file.

    Args:
        checkpoint: a ``best.pt`` or ``last.pt``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        data_root: the dataset cache (default: the one of the run).
        data: a file of structures with energies and forces (potentials only); every
            structure of it is evaluated, ``split`` is not used.

    Returns:
        For a property: ``mae`` in ``mae_unit``. For a potential: ``energy_mae`` (meV),
        ``energy_mae_per_atom`` (meV/atom), ``forces_mae`` and ``forces_rmse`` (meV/Å),
        ``forces_mae_per_element``.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}: choose train, val or test")
    payload, model = _load(checkpoint)
    run_config = dict(payload["run_config"])
    if data_root is not None:
        run_config["data_root"] = data_root
    config = TrainConfig.from_dict(run_config, source=f"checkpoint {checkpoint}")
    name = payload.get("name", payload["kind"])
    if config.data is None:
        if data is not None:
            raise ConfigError(
                f"checkpoint {checkpoint} predicts {payload['target']['name']} of QM9 "
                "molecules: --data takes the checkpoint of a potential (trained with --data)"
            )
        return _evaluate_property(checkpoint, name, model, config, split, log)
    run_data = load_data(config, log=False)
    if data is None:
        structures, where = run_data.subset(split), f"{split} split"
    else:
        structures = without_isolated_atoms(read_structures_file(data, config.data_root))
        where = os.fspath(data)
    metrics = potential_metrics(model, structures, run_data.task)
    result = {"checkpoint": str(checkpoint), "model": name, "data": where,
              "num_structures": len(structures), **metrics}  # fmt: skip
    log(
        f"{name} ({checkpoint}) on {len(structures)} structures of the {where}: energy MAE "
        f"{metrics['energy_mae']:.2f} meV ({metrics['energy_mae_per_atom']:.2f} meV/atom), "
        f"forces MAE {metrics['forces_mae']:.2f} meV/Å, RMSE {metrics['forces_rmse']:.2f} meV/Å"
    )
    return result


def _evaluate_property(checkpoint, name, model, config, split, log) -> dict[str, Any]:
    data = load_data(config, log=False)
    prediction = predict(model, data.subset(split))
    target = data.task.target
    mae = mean_absolute_error(prediction, data.targets(split), target.report_scale)
    result = {
        "checkpoint": str(checkpoint),
        "model": name,
        "target": target.name,
        "split": split,
        "num_molecules": len(prediction),
        "mae": mae,
        "mae_unit": target.report_unit,
    }
    log(
        f"{name} ({checkpoint}): {split} MAE of {target.name} on {len(prediction)} "
        f"molecules: {mae:.2f} {target.report_unit}"
    )
    return result


def read_xyz(path: str | os.PathLike) -> list[tuple[str, Tensor, Tensor]]:
    """The molecules of an XYZ file (several may follow each other): ``(comment, z, pos)``.

    Each molecule is a line with the number of atoms ``N``, a comment line, and ``N`` lines
    ``symbol x y z`` (Å); the symbol may also be an atomic number.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not UTF-8 text (a binary file?): expected XYZ blocks"
        ) from None
    molecules, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            count = int(lines[i].split()[0])
        except ValueError:
            raise ConfigError(
                f"{path} line {i + 1}: expected the number of atoms of an XYZ block, got "
                f"{lines[i].strip()[:40]!r}"
            ) from None
        if count < 1 or i + 2 + count > len(lines):
            raise ConfigError(
                f"{path} line {i + 1}: a block of {count} atoms does not fit the file"
            )
        comment = lines[i + 1].strip()
        z, pos = [], []
        for j in range(i + 2, i + 2 + count):
            parts = lines[j].split()
            try:
                symbol = parts[0]
                z.append(int(symbol) if symbol.isdigit() else atomic_number(symbol))
                pos.append([float(v) for v in parts[1:4]])
                if len(pos[-1]) != 3:
                    raise ValueError
            except (IndexError, KeyError, ValueError):
                raise ConfigError(
                    f"{path} line {j + 1}: expected 'symbol x y z' with an element symbol or "
                    f"atomic number, got {lines[j].strip()[:40]!r}"
                ) from None
            if not all(math.isfinite(v) and abs(v) < _MAX_COORDINATE for v in pos[-1]):
                raise ConfigError(
                    f"{path} line {j + 1}: coordinates must be finite numbers below "
                    f"{_MAX_COORDINATE:g} Å in size, got {lines[j].strip()[:60]!r}"
                )
        molecules.append((comment, torch.tensor(z), torch.tensor(pos, dtype=torch.float32)))
        i += 2 + count
    if not molecules:
        raise ConfigError(f"{path} holds no molecule: expected XYZ blocks")
    return molecules


def predict_xyz(
    checkpoint: str | os.PathLike,
    xyz: str | os.PathLike,
    output: str | os.PathLike | None = None,
    log: Log = print,
) -> list[float]:
    """Predict the target of a checkpoint for the molecules of an XYZ file.

    Writes ``index,comment,<target>_<unit>`` rows to ``output`` (a CSV) or logs them.
    """
    payload, model = _load(checkpoint)
    target = payload["target"]  # name and unit
    molecules = read_xyz(xyz)
    max_z = getattr(model, "max_z", 100)
    dtype = next(model.parameters()).dtype
    model.eval()
    values = []
    with torch.no_grad():
        for number, (_, z, pos) in enumerate(molecules, start=1):
            if int(z.max()) >= max_z:
                raise ConfigError(f"{xyz}: molecule {number} has atomic number {int(z.max())}")
            out = model(z, pos.to(dtype))
            values.append(float((out[0] if isinstance(out, tuple) else out)[0, 0]))
    header = ["index", "comment", f"{target['name']}_{target['unit']}"]
    rows = [[i + 1, m[0], f"{v:.6f}"] for i, (m, v) in enumerate(zip(molecules, values))]
    if output is not None:
        try:
            f = open(output, "w", newline="")
        except OSError as error:
            raise ConfigError(f"cannot write --output {output}: {error.strerror}") from None
        with f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        log(f"wrote {len(rows)} predictions of {target['name']} ({target['unit']}) to {output}")
    else:
        log(",".join(header))
        for row in rows:
            log(",".join(str(v) for v in row))
    if any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{xyz}: some predictions are not finite; check the coordinates")
    return values


def export_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, log: Log = print
) -> Path:
    """Export a checkpoint's model with :func:`~e3nn_pyg.compilation.export_model` to
    ``out`` (a ``.pt2`` file), checked against the model on the checkpoint's test split.

    Load it with PyTorch alone: ``torch.export.load(out).module()(z, pos, batch)``.
    """
    payload, model = _load(checkpoint)
    if payload["kind"] != "equivariant":
        raise ConfigError(
            f"checkpoint {checkpoint} holds a {payload['kind']} model: export takes "
            "EquivariantNet checkpoints (PyG's SchNet reads batch.max() in its readout, "
            "which torch.export cannot trace)"
        )
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"--out {out} must be a file path in an existing folder")
    program = export_model(model)
    torch.export.save(program, out)
    exported = torch.export.load(out).module()
    run_config = TrainConfig.from_dict(payload["run_config"], source=f"checkpoint {checkpoint}")
    data = load_data(run_config, log=False)
    error = 0.0
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for batch in DataLoader(data.subset("test"), batch_size=EVAL_BATCH_SIZE):
            pos = batch.pos.to(dtype)
            expected = model.energy(batch.z, pos, batch.batch)
            error = max(error, float((exported(batch.z, pos, batch.batch) - expected).abs().max()))
    log(
        f"exported {payload.get('name', payload['kind'])} ({checkpoint}, {str(dtype)[6:]}) to "
        f"{out}; on the {len(data.test)} test structures it differs from the checkpoint's "
        f"model by at most {error:.1e}. Load it with torch.export.load('{out}').module()"
    )
    return out
