r"""A whole run: data, the chosen model and baseline, the final table, files.

:func:`train` trains the model kind the config's ``model`` names and the baseline its
``baseline`` names (:func:`~e3nn_pyg.training.registry.run_kinds`) and writes to
``config.out``:

- ``config.yaml``: the resolved configuration (rerun with ``--config``);
- ``<folder>/{best,last}.pt`` of each kind trained (``equivariant_net``, ``schnet``, ...: the
  registry's folders): checkpoints, with ``history.csv`` (and ``tensorboard/`` when
  installed) next to them;
- ``metrics.json``: test and validation MAEs of every model and baseline, sizes, times;
- ``test_predictions.csv``: the test molecules with their DFT value and every prediction;
- ``learning_curves.png`` and ``parity.png`` (a potential: ``parity_energy.png`` and
  ``parity_forces.png``).

A potential's test structures may carry only some labels (energy, forces, stress): each
metric is over the structures (atoms) with its label and absent when none has it; a
result's ``test_mae`` is the task's score metric (forces MAE, or the energy MAE per atom
when ``forces_weight`` is 0, in ``mae_unit``), :obj:`None` (``-`` in the table) when no
test structure carries its label; a parity plot is drawn for each label some test
structure has. How each kind of task (:attr:`~e3nn_pyg.training.tasks.Task.kind`) is
reported and evaluated is one entry of ``_REPORTS`` and ``_EVALUATIONS``.

:func:`evaluate`, :func:`predict_xyz` and :func:`export_checkpoint` use a checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from ..datasets import atom_values, composition
from ..elements import CHEMICAL_SYMBOLS, atomic_number, element_names
from ..export import read_metadata, require_pt2_path, save_model
from ..graph import cartesian_shifts
from ..models import GraphPotential
from ..models.graph_input import check_potential, edge_vectors, save_graph_potential
from ..testing.equivariance import max_difference
from .checkpoint import load_checkpoint, model_from_checkpoint, task_from_checkpoint
from .config import ConfigError, TrainConfig, write_yaml
from .data import (
    MAX_Z,
    RunData,
    TargetStats,
    average_degree,
    fit_target_stats,
    load_data,
    read_test_structures,
    species_of,
)
from .distributed import Runtime, setup_runtime
from .loop import FitResult, Trainer, check_resumable_run, mean_absolute_error
from .plots import plot_learning_curves, plot_parity
from .registry import MODEL_KINDS, ModelKind, model_kind, run_kinds
from .tasks import EVAL_BATCH_SIZE, PotentialTask, predict

__all__ = [
    "check_models",
    "evaluate",
    "export_checkpoint",
    "format_table",
    "model_config",
    "predict_xyz",
    "read_xyz",
    "train",
]

_RUN_FILES = ("metrics.json", "test_predictions.csv", "learning_curves.png", "parity.png",
              "parity_energy.png", "parity_forces.png")  # fmt: skip
_MAX_COORDINATE = 1e6  # Å: float32 keeps distances of such coordinates to a few 0.01 Å
# The largest difference ``export`` accepts between a written program and its model, relative
# to the size of each output (at least 1 in its unit): 10x what the export tests allow.
_EXPORT_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-11}

Log = Callable[[str], None]


def model_config(
    kind: str,
    config: TrainConfig,
    stats: TargetStats,
    degree: float,
    species: list[int] | None = None,
) -> dict:
    """The constructor arguments of a model of the run (``kind``, an entry of
    :mod:`~e3nn_pyg.training.registry`): its section of the config, with what is fitted on
    the training set (offsets, neighbour count), the ``species`` of the training set, and the
    forces of a potential."""
    entry = model_kind(kind)
    fitted = {"readout": stats.readout, "mean": stats.mean, "std": stats.std,
              "atomref": stats.atomref, "species": species}  # fmt: skip
    if config.potential:
        fitted["derivative"] = True
    if entry.degree_argument is not None:
        fitted[entry.degree_argument] = round(degree, 3)
    return {**entry.arguments(config), **fitted}


def check_models(config: TrainConfig) -> None:
    """Build the run's models once, untrained, so that settings they refuse are reported
    before the data is loaded.

    Raises:
        ConfigError: naming the section and the model's own message.
    """
    for kind in run_kinds(config):
        try:
            kind.build(kind.arguments(config))
        # PyG's SchNet checks nothing itself: IndexError for one Gaussian, ...
        except (TypeError, ValueError, IndexError, RuntimeError, ZeroDivisionError) as error:
            raise ConfigError(
                f"invalid {kind.section.name} settings: {error or type(error).__name__}"
            ) from None


def _prepare_output(config: TrainConfig, resume: bool, overwrite: bool, runtime: Runtime) -> Path:
    """Check (every rank) and prepare (rank 0) the output folder."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder")
    folders = [out / kind.folder for kind in MODEL_KINDS.values()]
    previous = [folder / "last.pt" for folder in folders] + [out / "metrics.json"]
    if any(path.exists() for path in previous) and not (resume or overwrite):
        raise ConfigError(
            f"{out} already holds a run: pass --resume to continue it, --overwrite to replace "
            "it, or another --out"
        )
    if not runtime.is_main:
        runtime.barrier()  # rank 0 has prepared the folder
        return out
    if overwrite:
        for folder in folders:
            for file in ("best.pt", "last.pt"):
                (folder / file).unlink(missing_ok=True)
        for file in (*_RUN_FILES, "config.yaml"):
            (out / file).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create --out {out}: {error.strerror}") from None
    runtime.barrier()
    return out


def _composition(subset, stats: TargetStats) -> Tensor:
    """The per-element linear fit's prediction for every structure of a subset, ``[M]``."""
    atoms = composition(subset, MAX_Z).sum(1).long()  # [M]
    batch = torch.repeat_interleave(torch.arange(len(atoms)), atoms)  # [N]
    return stats.composition(atom_values(subset, "z"), batch, len(atoms))


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, log: Log = print
) -> dict[str, Any]:
    """Train the chosen model (and baseline), evaluate on the test set, write the files
    listed in the module docstring and return the metrics.

    Raises:
        ConfigError: for settings that cannot work (the message says what to fix).
        TrainingInterrupted: on Ctrl-C, after saving a checkpoint.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pick one")
    start = time.perf_counter()
    check_models(config)
    runtime = setup_runtime(config.device, config.dtype)
    runtime.require_data(config.resolved_batch_size)  # the splits are checked once loaded (Trainer)
    log = runtime.logger(log)
    out = _prepare_output(config, resume, overwrite, runtime)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    kinds = run_kinds(config)
    if resume:
        _refuse_other_kinds(out, kinds)
        check_resumable_run(out, config, {kind.folder: kind.name for kind in kinds})
    data, stats, degree = _prepare_data(config, kinds, out, runtime, log, start)
    fits = {
        kind: _fit(kind, config, data, stats, degree, out, runtime, log, resume) for kind in kinds
    }
    if not runtime.is_main:  # rank 0 evaluates and writes the run's files
        return {}
    metrics = _REPORTS[data.task.kind](fits, data, stats, config, out, runtime)
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


def _refuse_other_kinds(out: Path, kinds: list[ModelKind]) -> None:
    """``--resume`` continues the kinds the run chose: a checkpoint of another kind of the
    same section (another model) in ``out`` is refused, naming both kinds."""
    for kind in kinds:
        for other in MODEL_KINDS.values():
            path = out / other.folder / "last.pt"
            if other is not kind and other.section.name == kind.section.name and path.exists():
                flag = f"--{kind.section.name}"
                raise ConfigError(
                    f"--resume: {out} holds a run of {other.name} ({path}) but this run trains "
                    f"{flag} {kind.name}: resume with {flag} {other.name}, or train "
                    f"{kind.name} in another --out (or --overwrite)"
                )


def _prepare_data(config, kinds, out, runtime, log, start) -> tuple[RunData, TargetStats, float]:
    """The run's data (rank 0 processes and caches it first), the fitted offsets and the
    mean neighbour count; refuses models that cannot take the data."""
    if not runtime.is_main:
        runtime.barrier()
    data = load_data(config, log=config.progress and runtime.is_main)
    if runtime.is_main:
        runtime.barrier()
    for kind in kinds:
        if data.periodic and not kind.periodic:
            role = "baseline" if kind.baseline else "model"
            raise ConfigError(
                f"{config.data} holds periodic structures: the {kind.label} {role} takes "
                f"molecules only; train without {'--baseline' if kind.baseline else 'it'}"
            )
    stats = fit_target_stats(data, config.resolved_readout)
    degree = average_degree(data.subset("train"), config.model["cutoff"])
    if runtime.is_main:
        write_yaml(config.to_dict(), out / "config.yaml")
    log(
        f"{config.resolved_dataset}: {data.num_structures} structures (train {len(data.train)}, "
        f"val {len(data.val)}, test {len(data.test)}), {data.task.describe(stats)}, readout "
        f"{stats.readout}, {degree:.1f} neighbours within {config.model['cutoff']} Å on "
        f"average ({time.perf_counter() - start:.1f} s)"
    )
    return data, stats, degree


def _fit(kind: ModelKind, config, data, stats, degree, out, runtime, log, resume) -> FitResult:
    """Train one model kind of the run (or resume it)."""
    try:
        species = sorted(species_of(data.subset("train")))
        arguments = model_config(kind.name, config, stats, degree, species)
        trainer = Trainer(kind.label, kind.name, arguments, data, stats, config,
                          out / kind.folder, kind.learning_rate(config), log, runtime)  # fmt: skip
        return trainer.fit(resume=resume)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"invalid {kind.label} settings: {error}") from None


def _fit_record(kind: ModelKind, fit: FitResult, out: Path) -> dict[str, Any]:
    return {
        "label": kind.label,
        "best_val_mae": fit.best_val_mae,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "train_seconds": fit.seconds,
        "stop_reason": fit.stop_reason,
        "num_parameters": fit.num_parameters,
        "checkpoint": str(out / kind.folder / "best.pt"),
    }


def _run_record(config: TrainConfig, data: RunData, runtime: Runtime) -> dict[str, Any]:
    return {
        "dataset": config.resolved_dataset,
        "num_molecules": data.num_structures,
        "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "seed": config.seed,
        "world_size": runtime.world_size,
        "global_batch_size": config.resolved_batch_size,
        "device": str(runtime.device),
        "dtype": config.dtype,
    }


def potential_metrics(model: nn.Module, dataset, task: PotentialTask) -> dict[str, Any]:
    """Energy and force errors of a potential on a dataset view: ``energy_mae`` (meV),
    ``energy_mae_per_atom`` (meV/atom), ``forces_mae`` and ``forces_rmse`` (meV/Å),
    ``stress_mae`` (meV/Å³) and ``forces_mae_per_element`` (meV/Å by element symbol); a
    metric whose label no structure of ``dataset`` carries is absent."""
    return _error_metrics(task.errors(model, dataset), task)


def _error_metrics(errors: dict[str, Tensor], task: PotentialTask) -> dict[str, Any]:
    metrics: dict[str, Any] = task.eval_metrics(task.error_sums(errors))
    z, error = errors["z"], errors["forces"].abs()  # [N], [N, 3] of the labelled atoms
    metrics["forces_mae_per_element"] = {
        CHEMICAL_SYMBOLS[int(element)]: float(error[z == element].mean()) * task.report_scale
        for element in torch.unique(z)
    }
    return metrics


def _linear_fit_errors(errors: dict[str, Tensor], composition: Tensor, y: Tensor) -> dict:
    """The :meth:`~e3nn_pyg.training.tasks.PotentialTask.errors` of the per-element linear
    fit ``composition`` ``[M]`` of the energies, from a model's: its forces are 0 (their
    errors the negated references), its stress is not predicted."""
    return {**errors, "energy": composition - y, "forces": -errors["forces_reference"],
            "stress": errors["stress"][:0]}  # fmt: skip


def _potential_report(fits, data, stats, config, out, runtime) -> dict[str, Any]:
    """The run's record of a potential: every model's metrics on the test set (those of
    the labels the test structures carry), ``test_mae`` the score metric of the task (or
    :obj:`None` when no test structure carries its label); parity plots of the labelled
    energies and force components."""
    task, test = data.task, data.subset("test")
    y_test, score = data.targets("test"), task.score_metric  # [M] eV (placeholders unlabelled)
    results: dict[str, dict[str, Any]] = {}
    energies, force_components = {}, {}
    for kind, fit in fits.items():
        errors = task.errors(fit.model, test)
        metrics = _error_metrics(errors, task)
        results[kind.folder] = {**_fit_record(kind, fit, out), **metrics,
                                "test_mae": metrics.get(score.name)}  # fmt: skip
        energies[kind.label] = y_test + errors["energy"]  # [M] the predictions
        force_components[kind.label] = (errors["forces_reference"] + errors["forces"]).flatten()
    linear = task.eval_metrics(task.error_sums(
        _linear_fit_errors(errors, _composition(test, stats), y_test)))  # fmt: skip
    results["per_element_linear"] = {"label": "per-element linear fit", **linear,
                                     "test_mae": linear.get(score.name)}  # fmt: skip
    labelled = errors["energy_labelled"]  # [M], the same for every model
    plots = _potential_plots(fits, task, out, {
        "energy": ({k: v[labelled] for k, v in energies.items()}, y_test[labelled], "eV"),
        "forces": (force_components, errors["forces_reference"].flatten(), "eV/Å"),
    })  # fmt: skip
    _write_predictions(out / "test_predictions.csv", test, y_test, energies, "eV", labelled)
    return {
        **_run_record(config, data, runtime),
        "target": score.label.replace(" MAE", ""),
        "test_dataset": os.path.basename(config.test_data or config.data),
        "unit": score.unit.removeprefix("m"),
        "mae_unit": score.unit,
        "results": results,
        "plots": plots,
    }


def _potential_plots(fits, task: PotentialTask, out: Path, parities: dict) -> list[str]:
    """The learning curves and the parity plots of ``parities`` (name -> predictions by
    model, reference, unit) that have labelled items; the files written (none without
    matplotlib)."""
    curves = out / "learning_curves.png"
    histories = {kind.label: fit.history for kind, fit in fits.items()}
    if not plot_learning_curves(histories, curves, task.score_name, task.report_unit):
        return []
    written = [str(curves)]
    for name, (predictions, reference, unit) in parities.items():
        if len(reference):
            what = "force component" if name == "forces" else name
            path = out / f"parity_{name}.png"
            plot_parity(predictions, reference, path, what, unit, f"m{unit}", task.report_scale)
            written.append(str(path))
    return written


def _property_report(fits, data, stats, config, out, runtime) -> dict[str, Any]:
    target = data.task.target
    test = data.subset("test")
    y_test = data.targets("test")
    scale = target.report_scale
    predictions = {kind.label: predict(fit.model, test) for kind, fit in fits.items()}
    results: dict[str, dict[str, Any]] = {}
    for kind, fit in fits.items():
        label = kind.label
        results[kind.folder] = {
            "test_mae": mean_absolute_error(predictions[label], y_test, scale),
            **_fit_record(kind, fit, out),
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
    histories = {kind.label: fit.history for kind, fit in fits.items()}
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
        value = result.get("test_mae")  # None: no test structure carries the label
        mae = "-" if value is None else f"{value:.1f} {unit}"
        parameters = f"{result['num_parameters']:,}" if "num_parameters" in result else "-"
        epochs = str(result.get("epochs", "-"))
        seconds = f"{result['train_seconds']:.0f} s" if "train_seconds" in result else "-"
        lines.append(f"  {result['label']:<24} {mae:>14} {parameters:>11} {epochs:>7} {seconds:>8}")
    return "\n".join(lines)


def _write_predictions(
    path: Path,
    test,
    y: Tensor,
    predictions: dict[str, Tensor],
    unit: str,
    labelled: Tensor | None = None,
) -> None:
    """The test structures' reference (empty where ``labelled`` ``[M]`` is false) and
    every model's prediction, a CSV row each."""
    names = [getattr(test[i], "name", None) or str(i) for i in range(len(test))]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", f"dft_{unit}", *(f"{label}_{unit}" for label in predictions)])
        for i, name in enumerate(names):
            known = labelled is None or bool(labelled[i])
            row = [name, f"{float(y[i]):.6f}" if known else ""]
            row += [f"{float(p[i]):.6f}" for p in predictions.values()]
            writer.writerow(row)


def check_species(payload: dict[str, Any], present: Iterable[int], where: str) -> None:
    """Refuse structures with elements the checkpoint's model was not trained on.

    Raises:
        ConfigError: naming the elements of ``present`` (atomic numbers) outside the
            checkpoint's ``species``, and the option that allows them.
    """
    species = payload["model_config"].get("species")
    if species is None:  # trained before species were recorded: any element
        return
    unseen = sorted(set(present) - set(species))
    if unseen:
        raise ConfigError(
            f"{where} holds elements the model was not trained on: {element_names(unseen)}; it was "
            f"trained on {', '.join(CHEMICAL_SYMBOLS[z] for z in species)} (pass "
            "--allow-unseen-elements to predict them anyway)"
        )


def _load(checkpoint: str | os.PathLike, allow_unseen_elements: bool) -> tuple[dict, nn.Module]:
    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload, checkpoint)
    if allow_unseen_elements:
        model.allow_unseen_elements = True
    return payload, model


def evaluate(
    checkpoint: str | os.PathLike,
    split: str = "test",
    data_root: str | None = None,
    data: str | os.PathLike | None = None,
    log: Log = print,
    allow_unseen_elements: bool = False,
) -> dict[str, Any]:
    """Errors of a checkpoint on a split of the data it was trained on, or (a potential) on
    the structures of a file, which needs nothing of the run but the checkpoint.

    Args:
        checkpoint: a ``best.pt`` or ``last.pt``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        data_root: the dataset cache (default: the one of the run; for ``data``, the
            default cache).
        data: a file of structures with energies, forces or both, labels missing on
            some structures allowed (potentials only); every structure of it is
            evaluated, ``split`` is not used.
        allow_unseen_elements: evaluate structures with elements the model was not
            trained on (refused by default).

    Returns:
        For a property: ``mae`` in ``mae_unit``. For a potential: ``energy_mae`` (meV),
        ``energy_mae_per_atom`` (meV/atom), ``forces_mae`` and ``forces_rmse`` (meV/Å),
        ``stress_mae`` (meV/Å³), ``forces_mae_per_element``; each over the structures
        (atoms) with its label, absent when none has it.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}: choose train, val or test")
    payload, model = _load(checkpoint, allow_unseen_elements)
    task = task_from_checkpoint(payload, checkpoint)
    if data is not None and not task.forces:
        raise ConfigError(
            f"checkpoint {checkpoint} predicts {payload['target']['name']} of QM9 "
            "molecules: --data takes the checkpoint of a potential (trained with --data)"
        )
    if data is not None:
        structures = read_test_structures(data, data_root)
        where = os.fspath(data)
    else:
        run_config = {**payload["run_config"], **({"data_root": data_root} if data_root else {})}
        config = TrainConfig.from_dict(run_config, source=f"checkpoint {checkpoint}")
        structures, where = load_data(config, log=False).subset(split), f"{split} split"
    if not allow_unseen_elements:
        check_species(payload, species_of(structures), where)
    evaluation = _EVALUATIONS[task.kind]
    return evaluation(checkpoint, payload["name"], model, task, structures, where, log)


def _evaluate_potential(checkpoint, name, model, task, structures, where, log) -> dict[str, Any]:
    metrics = potential_metrics(model, structures, task)
    result = {"checkpoint": str(checkpoint), "model": name, "data": where,
              "num_structures": len(structures), **metrics}  # fmt: skip
    log(
        f"{name} ({checkpoint}) on {len(structures)} structures of the {where}: "
        f"{task.format_metrics(metrics)}"
    )
    return result


def _evaluate_property(checkpoint, name, model, task, structures, where, log) -> dict[str, Any]:
    split = where.removesuffix(" split")  # a property is evaluated on "<split> split"
    prediction = predict(model, structures)
    target = task.target
    mae = mean_absolute_error(prediction, task.values(structures), target.report_scale)
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


#: how a run reports each kind of task (:attr:`~e3nn_pyg.training.tasks.Task.kind`): the
#: record of the test set and plots, and the result of :func:`evaluate`
_REPORTS = {"property": _property_report, "potential": _potential_report}
_EVALUATIONS = {"property": _evaluate_property, "potential": _evaluate_potential}


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
    allow_unseen_elements: bool = False,
) -> list[float]:
    """Predict the target of a checkpoint (the energy of a potential) for the molecules of
    an XYZ file; elements the model was not trained on are refused unless
    ``allow_unseen_elements``.

    Writes ``index,comment,<target>_<unit>`` rows to ``output`` (a CSV) or logs them.
    """
    payload, model = _load(checkpoint, allow_unseen_elements)
    target = payload["target"]  # name and unit
    molecules = read_xyz(xyz)
    present = {int(z) for _, numbers, _ in molecules for z in numbers}
    outside = sorted(z for z in present if z >= getattr(model, "max_z", MAX_Z))
    if outside:
        raise ConfigError(f"{xyz}: atomic numbers {outside} lie beyond the model's elements")
    if not allow_unseen_elements:
        check_species(payload, present, os.fspath(xyz))
    dtype = next(model.parameters()).dtype
    model.eval()
    values = []
    with torch.no_grad():
        for _, z, pos in molecules:
            out = model(z, pos.to(dtype))
            values.append(float((out[0] if isinstance(out, tuple) else out)[0, 0]))
    header = ["index", "comment", f"{target['name']}_{target['unit']}"]
    rows = [[i + 1, m[0], f"{v:.6f}"] for i, (m, v) in enumerate(zip(molecules, values))]
    _write_rows(rows, header, output, log)
    if output is not None:
        log(f"wrote {len(rows)} predictions of {target['name']} ({target['unit']}) to {output}")
    if any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{xyz}: some predictions are not finite; check the coordinates")
    return values


def _write_rows(rows: list[list], header: list[str], output, log: Log) -> None:
    """CSV rows to the file ``output``, or logged when it is None."""
    if output is None:
        log(",".join(header))
        for row in rows:
            log(",".join(str(v) for v in row))
        return
    try:
        f = open(output, "w", newline="")
    except OSError as error:
        raise ConfigError(f"cannot write --output {output}: {error.strerror}") from None
    with f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    log: Log = print,
    allow_unseen_elements: bool = False,
    aoti: bool = False,
    graph_input: bool = False,
) -> Path:
    """Write a checkpoint's model with :func:`~e3nn_pyg.export.save_model` to ``out`` (a
    ``.pt2`` file, with the model's metadata), checked against the model on the
    checkpoint's test split: a program whose outputs differ from the model's by more than
    1e-5 (float32) or 1e-11 (float64) of their size is removed and refused with
    :class:`ConfigError` (the log reports the largest difference otherwise). The program
    refuses elements the model was not trained on, unless ``allow_unseen_elements``.

    Load it with ``import torch, e3nn_pyg``: ``torch.export.load(out).module()``, or with
    ``aoti`` (an AOTInductor package) ``torch._inductor.aoti_load_package(out)``, called
    ``(z, pos, batch)``, or ``(z, pos, batch, cell, pbc)`` for a model trained on periodic
    structures (see :mod:`e3nn_pyg.export`).

    With ``graph_input`` (a potential's checkpoint) it writes the graph-input program of
    :func:`~e3nn_pyg.models.graph_input.save_graph_potential` instead, called ``(z,
    edge_vec, edge_index)`` on the caller's neighbour list; it is checked on the model's
    own graph of the test structures (the radius graph of its cutoff, with the periodic
    images of crystals). That program checks no input, species included.
    """
    payload, model = _load(checkpoint, allow_unseen_elements)
    _check_exportable(payload, model, checkpoint, graph_input)
    try:
        out = require_pt2_path(out)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--out: {error}") from None
    run_config = TrainConfig.from_dict(payload["run_config"], source=f"checkpoint {checkpoint}")
    data = load_data(run_config, log=False)
    if graph_input:
        save_graph_potential(model, out, aoti=aoti)
    else:
        target = {key: payload["target"][key] for key in ("name", "unit")}
        save_model(model, out, periodic=data.periodic, aoti=aoti, target=target)
    if aoti:
        program = torch._inductor.aoti_load_package(os.fspath(out))
    else:
        program = torch.export.load(out).module()
    pairs = (_graph_export_pairs if graph_input else _export_pairs)(program, model, data)
    error, relative = _differences(pairs)
    dtype = next(model.parameters()).dtype
    if relative > _EXPORT_TOLERANCE[dtype]:
        out.unlink()
        raise ConfigError(
            f"the program written to {out} differs from the checkpoint's model by {error:.1e} "
            f"on its test split ({relative:.1e} relative to the size of the outputs, more than "
            f"the {_EXPORT_TOLERANCE[dtype]:.0e} that {str(dtype)[6:]} allows): the file was "
            "removed; this is a bug of e3nn_pyg's export, please report it"
        )
    call = f"({', '.join(read_metadata(out)['inputs'])})"
    if graph_input:
        call += " on a neighbour list (see e3nn_pyg.models.graph_input)"
    loader = "torch._inductor.aoti_load_package" if aoti else "torch.export.load"
    log(
        f"exported {payload['name']} ({checkpoint}, {str(dtype)[6:]}) to {out}; on the "
        f"{len(data.test)} test structures it differs from the checkpoint's model by at most "
        f"{error:.1e}. Load it after import e3nn_pyg with {loader}('{out}')"
        f"{'' if aoti else '.module()'}, called {call}; its metadata: "
        f"e3nn_pyg.export.read_metadata('{out}')"
    )
    return out


def _check_exportable(
    payload: dict[str, Any], model: nn.Module, checkpoint: str | os.PathLike, graph_input: bool
) -> None:
    """Refuse a checkpoint that ``export`` cannot write: a kind it cannot trace, and with
    ``graph_input`` what is not a potential of per-atom energies."""
    refusal = MODEL_KINDS[payload["kind"]].export_refusal
    if refusal is not None:
        exportable = [kind.label for kind in MODEL_KINDS.values() if kind.export_refusal is None]
        raise ConfigError(
            f"checkpoint {checkpoint} holds a {payload['kind']} model, which export does not "
            f"take ({refusal}): export {' or '.join(exportable)} checkpoints"
        )
    if not graph_input:
        return
    if task_from_checkpoint(payload, checkpoint).kind != "potential":
        raise ConfigError(
            f"--graph-input exports a potential for MD engines, but checkpoint {checkpoint} "
            f"predicts {payload['target']['name']} of QM9 molecules: export it without "
            "--graph-input, or a potential's checkpoint (trained with --data)"
        )
    try:
        check_potential(model)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--graph-input: {error}") from None


def _differences(pairs: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """The largest absolute difference of ``(got, want)`` pairs of outputs, and the largest
    relative to the size of ``want`` (its largest magnitude, at least 1): NaN in both counts
    as equal (the stress of a molecule), NaN in one only as an infinite difference
    (:func:`~e3nn_pyg.testing.max_difference`)."""
    error = relative = 0.0
    for got, want in pairs:
        if not want.numel():
            continue
        largest = max_difference(got, want, equal_nan=True)
        size = max(1.0, float(want.abs().nan_to_num(0.0).max()))
        error, relative = max(error, largest), max(relative, largest / size)
    return error, relative


def _export_pairs(
    program: Callable, model: nn.Module, data: RunData
) -> Iterable[tuple[Tensor, Tensor]]:
    """The outputs (energies, forces, stresses) of an exported program and of its model on
    the test split, as ``(program's, model's)`` pairs (with cells and periodic axes when the
    data are periodic)."""
    dtype = next(model.parameters()).dtype
    stress = data.periodic and model.derivative  # what a periodic force program returns
    for batch in DataLoader(data.subset("test"), batch_size=EVAL_BATCH_SIZE):
        inputs = (batch.z, batch.pos.to(dtype), batch.batch)
        if data.periodic:
            inputs += (batch.cell.to(dtype), batch.pbc)
            if stress and not batch.pbc.any():
                continue  # no stress to compute: the program refuses such a batch
        with torch.no_grad():
            expected = model(*inputs, stress=True) if stress else model(*inputs)
            outputs = program(*inputs)
        yield from zip(_tensors(outputs), _tensors(expected), strict=True)


def _graph_export_pairs(
    program: Callable, model: nn.Module, data: RunData
) -> Iterable[tuple[Tensor, Tensor]]:
    """The outputs of a graph-input program and of its model on the test split, as
    ``(program's, model's)`` pairs, the program called on the model's own graph of each
    batch: its per-atom energies and per-pair forces against
    :class:`~e3nn_pyg.models.GraphPotential`, its energy (the batch's sum, and per
    structure) and forces against the model's."""
    dtype = next(model.parameters()).dtype
    potential = GraphPotential(model)
    for batch in DataLoader(data.subset("test"), batch_size=EVAL_BATCH_SIZE):
        inputs = (batch.z, batch.pos.to(dtype), batch.batch)
        if data.periodic:
            inputs += (batch.cell.to(dtype), batch.pbc)
        edge_index, edge_shift = _model_edges(model, *inputs)
        edge_vec = edge_vectors(inputs[1], edge_index, edge_shift)  # [E, 3]
        got = _tensors(program(batch.z, edge_vec, edge_index))  # atom_energy, energy, ...
        expected = potential(batch.z, inputs[1], edge_index, edge_shift)
        with torch.no_grad():
            energy, forces = model(*inputs)  # [G, 1], [N, 3]
        structures = energy.new_zeros(energy.shape[0]).index_add_(0, batch.batch, got[0])
        yield from [*zip(got, expected, strict=True), (structures, energy[:, 0]),
                    (got[1], energy.sum()), (got[2], forces)]  # fmt: skip


def _model_edges(
    model: nn.Module, z: Tensor, pos: Tensor, batch: Tensor, *periodic: Tensor
) -> tuple[Tensor, Tensor | None]:
    """The edges ``[2, E]`` of the model's interaction graph for a batch and their
    Cartesian shifts ``[E, 3]`` (``None`` without ``periodic``: ``(cell, pbc)``)."""
    cell, pbc = periodic if periodic else (None, None)
    edge_index, shifts = model.interaction_graph(pos, batch, cell, pbc)
    edge_shift = None if cell is None else cartesian_shifts(shifts, cell, edge_index, batch)
    return edge_index, edge_shift


def _tensors(outputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    """A model's or program's outputs as a tuple (one tensor, or a tuple or list of them)."""
    return (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
