r"""Learning curves at equal wall-clock time: force MAE against seconds of training, one core each.

The protocol (issue 17). Every contender trains on the revised-MD17 ethanol set shipped with
the package (``e3nn_pyg/datasets/ethanol``) under the same wall-clock budget (``--budget``,
default 1200 s), on one thread (``OMP_NUM_THREADS=1``; ours also ``--num-threads 1``):

- **the split**: 900 training and 100 validation structures of ``train.xyz``, drawn by our own
  :func:`~e3nn_pyg.training.data.load_data` with the run's seed (the split ``e3nn-pyg train``
  uses), and all 1,000 structures of ``test_MD.xyz`` as the test set;
- **the same E0s**: the isolated-atom energies of ``isolated_atoms.xyz``;
- **the same batch size** (``--batch-size``, default: ``e3nn-pyg train``'s) and the same weight
  average (EMA with ``e3nn-pyg train``'s decay, used for validation and the final model).

Contenders (``--models``):

- ``equivariant-net`` and ``many-body``: ``e3nn-pyg train --model NAME`` with
  ``--time-budget``; the validation force MAE per epoch and the elapsed seconds come from the
  ``history.csv`` the run writes next to its checkpoints, the test errors from its
  ``metrics.json`` (the train command evaluates the best model on ``--test-data``);
- ``schnet``: PyG's SchNet as ``e3nn-pyg train``'s baseline (``--baseline schnet``), so it
  trains in the same command as the first of our models asked for, after it, with its own
  budget (the command has no run of the baseline alone);
- ``mace``: mace-torch trained by its own command ``mace_run_train`` from the environment of
  ``--mace-python`` (``make mace-env``); skipped with a note when that interpreter is absent
  or cannot import ``mace``. The 900/100 structures our split draws are written to
  ``train.xyz`` and ``valid.xyz`` in its folder (keys ``REF_energy``/``REF_forces``), the
  E0s are passed as ``--E0s``.

MACE's settings: ``mace_run_train`` has no wall-clock limit, so it runs with a large
``--max_num_epochs`` and is stopped (SIGTERM) when ``--budget`` seconds have passed since its
log's ``TRAINING`` line (its data loading and model set-up are not counted, nor are ours). It
keeps a checkpoint of the EMA weights whenever the validation loss improves; a second
``mace_run_train --restart_latest`` with ``--max_num_epochs`` equal to that checkpoint's epoch
trains no further and writes the model file, and ``mace_eval_configs`` predicts the test set,
from which this script computes the same MAEs as ours (energy per structure in meV, force
components in meV/Å). Its validation force MAE per epoch is read from its log
(``--error_table TotalMAE``), the seconds from the log's timestamps. The model keeps MACE's
defaults (``MACE``, 2 interactions, spherical harmonics up to ``max_ell`` 3, ``max_L`` 1,
correlation order 3 (body order 4), r_max 5 Å as ours, 8 Bessel functions, AMSGrad at
learning rate 0.01 with ``ReduceLROnPlateau``, energy weight 1 and forces weight 100), except
what the budget and the shared protocol set:

- ``--num_channels 32`` (``--mace-channels``) instead of its 128: issue 17 measured an epoch
  on one core at about 100 s with 128 channels and about 16 s with 32, so 20 minutes buy 12
  epochs of the default model against the 68 the small one made there;
- ``--default_dtype float32`` (``--mace-dtype``), our runs' dtype, instead of its float64;
- ``--batch_size`` and ``--valid_batch_size`` ours (8, a potential's default) instead of its 10;
- ``--ema --ema_decay 0.99`` (our EMA), which MACE's examples recommend too;
- no stage two (``--swa``): it starts at an epoch fixed in advance, which a wall-clock stop
  does not know; ``--plot False``: its plots would spend the budget.

``--parallel 2`` runs two commands at a time (each on one thread: the machine has 2 cores);
the table says which runs overlapped ("beside"). Results go to ``--out`` (default
``runs/bench_learning``): ``results.json`` (the numbers: protocol, curves, test errors),
``learning_curves.png`` (validation force MAE against seconds, all contenders) and one folder
per command with its log.

    python benchmarks/bench_learning.py                       # all contenders, 1200 s, seed 0
    python benchmarks/bench_learning.py --budget 20 --models mace --seeds 0
    python benchmarks/bench_learning.py --parallel 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from e3nn_pyg.datasets import isolated_atom_mask, structure_values
from e3nn_pyg.training.config import POTENTIAL_BATCH_SIZE, TrainConfig
from e3nn_pyg.training.data import load_data, read_structures_file, species_of
from e3nn_pyg.training.registry import BASELINES, MODEL_KINDS, MODELS

REPO = Path(__file__).resolve().parent.parent
ETHANOL = REPO / "e3nn_pyg" / "datasets" / "ethanol"
TRAIN_FILE, TEST_FILE = ETHANOL / "train.xyz", ETHANOL / "test_MD.xyz"
ISOLATED_FILE = ETHANOL / "isolated_atoms.xyz"
CONTENDERS = (*MODELS, *BASELINES, "mace")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
MEV = 1000.0  # eV -> meV
MACE_NAME = "mace"  # --name of the MACE run: its files are <name>_run-<seed>.*
MACE_MAX_EPOCHS = 1_000_000  # stopped by the budget long before
POLL_SECONDS = 0.5


@dataclass
class Job:
    """One command of the benchmark: an ``e3nn-pyg train`` (our model, perhaps a baseline
    after it) or a MACE training, for one seed."""

    models: list[str]
    seed: int
    folder: Path
    commands: list[str] = field(default_factory=list)  # as run, for the record
    note: str = ""  # what went wrong, if anything
    start: float | None = None  # Unix seconds when MACE's training began (its log)
    stop: float | None = None  # and when it was stopped
    e0s: dict[int, float] = field(default_factory=dict)  # MACE's --E0s (eV)

    @property
    def name(self) -> str:
        return f"{'+'.join(self.models)} seed {self.seed}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--budget", type=float, default=1200.0, help="seconds of training per model")
    add("--models", nargs="+", choices=CONTENDERS, default=list(CONTENDERS), metavar="MODEL",
        help=f"the contenders, of {{{', '.join(CONTENDERS)}}} (default: all)")  # fmt: skip
    add("--seeds", nargs="+", type=int, default=[0], help="a run of every contender per seed")
    add("--out", type=Path, default=REPO / "runs" / "bench_learning", help="results folder")
    add("--parallel", type=int, default=1,
        help="commands at a time, each on one thread (default: 1)")  # fmt: skip
    add("--batch-size", type=int, default=POTENTIAL_BATCH_SIZE, help="structures per batch")
    add("--mace-python", type=Path, default=REPO / ".venv-mace" / "bin" / "python",
        help="the interpreter of the mace-torch environment (default: .venv-mace's)")  # fmt: skip
    add("--mace-channels", type=int, default=32, help="MACE's --num_channels")
    add("--mace-max-L", type=int, default=1, dest="mace_max_L", help="MACE's --max_L")
    add("--mace-max-ell", type=int, default=3, help="MACE's --max_ell")
    add("--mace-correlation", type=int, default=3, help="MACE's --correlation")
    add("--mace-r-max", type=float, default=defaults.model["cutoff"],
        help="MACE's --r_max in Å (default: our cutoff)")  # fmt: skip
    add("--mace-dtype", choices=("float32", "float64"), default=defaults.dtype,
        help="MACE's --default_dtype (default: ours)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.budget <= 0 or args.batch_size < 1 or args.mace_channels < 1:
        parser.error("--budget, --batch-size and --mace-channels must be positive")
    if not 1 <= args.parallel <= (os.cpu_count() or 1):
        parser.error(f"--parallel must lie in [1, {os.cpu_count()}] (one core each)")
    baselines = [name for name in BASELINES if name in args.models]
    if len(baselines) > len([name for name in MODELS if name in args.models]):
        parser.error(f"a baseline ({', '.join(baselines)}) trains after one of our models "
                     "(e3nn-pyg train --baseline): add one of ours per baseline")  # fmt: skip
    args.ema_decay = defaults.ema_decay
    args.out = args.out.resolve()  # (MACE runs in its own folder: paths must not be relative)
    return args


def plan_jobs(args: argparse.Namespace, mace_missing: str) -> list[Job]:
    """The commands to run, the longest first (a baseline runs after one of our models)."""
    jobs = []
    ours = [name for name in MODELS if name in args.models]
    baselines = [name for name in BASELINES if name in args.models]
    for seed in args.seeds:
        for index, model in enumerate(ours):
            models = [model, *baselines[index : index + 1]]
            jobs.append(Job(models, seed, args.out / f"seed{seed}" / "+".join(models)))
        if "mace" in args.models and not mace_missing:
            jobs.append(Job(["mace"], seed, args.out / f"seed{seed}" / "mace"))
    return sorted(jobs, key=lambda job: -len(job.models))


def one_thread_environment() -> dict[str, str]:
    return {**os.environ, **ONE_THREAD}


def run_logged(command: list[str], log: Path, job: Job, cwd: Path | None = None) -> int:
    """Run ``command`` (recorded in ``job``) with its output into ``log``; its status."""
    job.commands.append(shown(command))
    with open(log, "a") as out:
        return subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                               env=one_thread_environment())  # fmt: skip


def shown(command: list[str]) -> str:
    """A command as a shell line, with paths relative to the repository (where ``make`` runs
    it: every path it takes is explicit)."""
    return shlex.join(command).replace(f"{REPO}/", "")


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# -- our models ------------------------------------------------------------------------------
def ours_command(job: Job, args: argparse.Namespace) -> list[str]:
    """``e3nn-pyg train`` of the job's model (and its baseline after it) under the budget."""
    model, *baseline = job.models
    command = [sys.executable, "-m", "e3nn_pyg.cli", "train", "--model", model,
               "--data", str(TRAIN_FILE), "--test-data", str(TEST_FILE),
               "--isolated-atoms", str(ISOLATED_FILE), "--seed", str(job.seed),
               "--batch-size", str(args.batch_size), "--time-budget", str(args.budget),
               "--epochs", "100000", "--patience", "100000", "--num-threads", "1",
               "--no-progress", "--out", str(job.folder), "--overwrite"]  # fmt: skip
    return command + (["--baseline", *baseline] if baseline else [])


def run_ours(job: Job, args: argparse.Namespace) -> None:
    job.folder.mkdir(parents=True, exist_ok=True)
    log = job.folder / "train.log"
    log.unlink(missing_ok=True)
    status = run_logged(ours_command(job, args), log, job)
    if status != 0:
        job.note = f"e3nn-pyg train exited with status {status}: {last_line(log)}"


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def ours_records(job: Job) -> list[dict]:
    """A record per model of an ``e3nn-pyg train`` run: its curve and test errors."""
    metrics_path = job.folder / "metrics.json"
    if job.note or not metrics_path.exists():
        return [failed_record(model, job) for model in job.models]
    results = json.loads(metrics_path.read_text())["results"]
    records = []
    for model in job.models:
        result = results[MODEL_KINDS[model].folder]
        history_path = Path(result["checkpoint"]).parent / "history.csv"
        rows = read_history(history_path)
        curve = [[float(row["elapsed"]), float(row["val_forces_mae"])] for row in rows]
        end = history_path.stat().st_mtime  # written after the last epoch
        interval = [end - curve[-1][0], end] if curve else None
        records.append(record(model, job, result["label"], curve, interval,
                              result.get("forces_mae"), result.get("energy_mae")))  # fmt: skip
    return records


def record(model, job, label, curve, interval, test_forces, test_energy, note="") -> dict:
    return {
        "model": model,
        "label": label,
        "seed": job.seed,
        "epochs": len(curve),
        "curve": curve,  # [seconds, validation force MAE meV/Å] per epoch
        "best_val_forces_mae": min((mae for _, mae in curve), default=None),
        "test_forces_mae": test_forces,  # meV/Å
        "test_energy_mae": test_energy,  # meV per structure
        "interval": interval,  # Unix seconds of the training
        "commands": job.commands,
        "note": note or job.note,
    }


def failed_record(model: str, job: Job) -> dict:
    return record(model, job, model, [], None, None, None, job.note or "no metrics written")


# -- MACE ------------------------------------------------------------------------------------
def mace_missing(python: Path) -> str:
    """Why MACE cannot run from ``python`` (empty when it can)."""
    if not python.exists():
        return f"{python} does not exist (make mace-env)"
    if not (python.parent / "mace_run_train").exists():
        return f"no mace_run_train next to {python}"
    check = subprocess.run([str(python), "-c", "import mace"], capture_output=True, text=True)
    if check.returncode != 0:
        return f"{python} cannot import mace: {(check.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


def write_mace_split(seed: int, folder: Path) -> dict[int, float]:
    """Write the training and validation structures of our split for ``seed`` as extxyz
    files for MACE; the E0s (eV) of the training elements."""
    import ase.io

    files = {"data": TRAIN_FILE, "test_data": TEST_FILE, "isolated_atoms": ISOLATED_FILE}
    values = {key: str(path) for key, path in files.items()}
    data = load_data(TrainConfig.from_dict({**values, "seed": seed}), log=False)
    frames = ase.io.read(TRAIN_FILE, ":")
    # the file's frame of each structure of data.dataset (isolated-atom entries left out)
    kept = (~isolated_atom_mask(read_structures_file(TRAIN_FILE))).nonzero()[:, 0]  # [M]
    for name, split in (("train", "train"), ("valid", "val")):
        chosen = [frames[i] for i in kept[getattr(data, split)].tolist()]
        energies = torch.tensor([atoms.get_potential_energy() for atoms in chosen])
        ours = structure_values(data.subset(split), "energy").double()  # [M] eV
        if not torch.allclose(energies, ours, rtol=0.0, atol=1e-3):
            raise RuntimeError(f"the {name} structures written for MACE are not our split's")
        ase.io.write(folder / f"{name}.xyz", [mace_labelled(atoms) for atoms in chosen])
    species = sorted(species_of(data.subset("train")))
    return {z: float(data.reference_energies[z, 0]) for z in species}


def mace_labelled(atoms):
    """A copy of ``atoms`` with its energy and forces under MACE's keys."""
    copy = atoms.copy()  # without the calculator that holds the labels
    copy.info["REF_energy"] = atoms.get_potential_energy()
    copy.arrays["REF_forces"] = atoms.get_forces()
    return copy


def mace_train_command(args, job: Job, e0s: dict[int, float], epochs: int, stage: str) -> list:
    """``mace_run_train`` with the settings of the module docstring; its log and results go
    to ``logs_<stage>`` and ``results_<stage>`` (the final run must not append to the
    training's)."""
    folder = job.folder
    flags = {
        "name": MACE_NAME, "seed": job.seed, "device": "cpu", "work_dir": folder,
        "log_dir": folder / f"logs_{stage}", "results_dir": folder / f"results_{stage}",
        "checkpoints_dir": folder / "checkpoints", "model_dir": folder,
        "train_file": folder / "train.xyz", "valid_file": folder / "valid.xyz",
        "energy_key": "REF_energy", "forces_key": "REF_forces", "E0s": repr(e0s),
        "model": "MACE", "num_channels": args.mace_channels, "max_L": args.mace_max_L,
        "max_ell": args.mace_max_ell, "correlation": args.mace_correlation,
        "r_max": args.mace_r_max, "batch_size": args.batch_size,
        "valid_batch_size": args.batch_size, "max_num_epochs": epochs,
        "default_dtype": args.mace_dtype, "error_table": "TotalMAE", "eval_interval": 1,
        "plot": False,
    }  # fmt: skip
    command = [str(args.mace_python.parent / "mace_run_train")]
    command += [f"--{key}={value}" for key, value in flags.items()]
    if args.ema_decay is not None:
        command += ["--ema", f"--ema_decay={args.ema_decay}"]
    return command


_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) INFO: "
_TRAINING_LINE = re.compile(_STAMP + "=+TRAINING=+")
_EPOCH_LINE = re.compile(_STAMP + r"Epoch (\d+): .*MAE_E=\s*(\S+) meV, MAE_F=\s*(\S+) meV")


def log_time(stamp: str) -> float:
    """Unix seconds of a timestamp of MACE's log (local time)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def mace_log(job: Job) -> Path:
    """The log of MACE's training run (``mace_run_train`` names it after --name and --seed)."""
    return job.folder / "logs_train" / f"{MACE_NAME}_run-{job.seed}.log"


def training_start(log: Path) -> float | None:
    """When MACE's training began (its log's TRAINING line), or None before."""
    if not log.exists():
        return None
    match = _TRAINING_LINE.search(log.read_text())
    return log_time(match.group(1)) if match else None


def train_mace_for_budget(command: list[str], job: Job, budget: float) -> tuple:
    """Run ``command`` until ``budget`` seconds after its training began, then stop it;
    ``(start, stop)`` in Unix seconds (start None when it never began training)."""
    job.commands.append(shown(command))
    with open(job.folder / "train.log", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=job.folder, env=one_thread_environment())  # fmt: skip
        start, stopped = None, False
        while process.poll() is None:
            start = start or training_start(mace_log(job))
            if start is not None and time.time() - start >= budget:
                process.terminate()
                process.wait()
                stopped = True
                break
            time.sleep(POLL_SECONDS)
    stop, start = time.time(), start or training_start(mace_log(job))
    if not stopped and process.returncode != 0:
        job.note = (f"mace_run_train exited with status {process.returncode}: "
                    f"{last_line(job.folder / 'train.log')}")  # fmt: skip
    return start, stop


def prepare_mace(job: Job) -> None:
    """Empty MACE's folder (a previous run's checkpoints would be taken for this one's) and
    write its split files, before any command runs (our dataset cache is then written by one
    process, this one, on first use)."""
    shutil.rmtree(job.folder, ignore_errors=True)
    job.folder.mkdir(parents=True)
    try:
        job.e0s = write_mace_split(job.seed, job.folder)
    except (OSError, ValueError, RuntimeError) as error:
        job.note = f"cannot write MACE's split: {error}"


def run_mace(job: Job, args: argparse.Namespace) -> None:
    """Train MACE for the budget, then write its model and predict the test set."""
    if job.note:  # no split files
        return
    e0s = job.e0s
    command = mace_train_command(args, job, e0s, MACE_MAX_EPOCHS, "train")
    job.start, job.stop = train_mace_for_budget(command, job, args.budget)
    epochs = sorted(int(re.search(r"_epoch-(\d+)\.pt$", path.name).group(1))
                    for path in (job.folder / "checkpoints").glob("*_epoch-*.pt"))  # fmt: skip
    if job.note or not epochs:
        job.note = job.note or "MACE finished no epoch within the budget"
        return
    final_log = job.folder / "final.log"
    final = [*mace_train_command(args, job, e0s, epochs[-1], "final"), "--restart_latest"]
    evaluate = [str(args.mace_python.parent / "mace_eval_configs"), f"--configs={TEST_FILE}",
                f"--model={job.folder / (MACE_NAME + '.model')}", "--device=cpu",
                f"--output={job.folder / 'test_predictions.xyz'}",
                f"--default_dtype={args.mace_dtype}",
                f"--batch_size={args.batch_size}"]  # fmt: skip
    for step in (final, evaluate):
        status = run_logged(step, final_log, job, cwd=job.folder)
        if status != 0:
            job.note = f"{Path(step[0]).name} exited with status {status}: {last_line(final_log)}"
            return


def mace_test_errors(predictions: Path) -> tuple[float, float]:
    """Force MAE (meV/Å per component) and energy MAE (meV per structure) of MACE's
    predictions of the test file."""
    import ase.io
    import numpy as np

    predicted, reference = ase.io.read(predictions, ":"), ase.io.read(TEST_FILE, ":")
    if len(predicted) != len(reference):
        raise RuntimeError(f"{predictions}: {len(predicted)} structures, not {len(reference)}")
    pairs = list(zip(predicted, reference))
    energy = [p.info["MACE_energy"] - r.get_potential_energy() for p, r in pairs]  # [M]
    forces = np.concatenate([p.arrays["MACE_forces"] - r.get_forces() for p, r in pairs])  # [N, 3]
    return MEV * float(np.abs(forces).mean()), MEV * float(np.abs(energy).mean())


def mace_record(job: Job, args: argparse.Namespace) -> dict:
    """MACE's curve (validation force MAE per epoch, from its log) and test errors."""
    log = mace_log(job)
    curve = []
    if job.start is not None and log.exists():
        for match in _EPOCH_LINE.finditer(log.read_text()):
            if log_time(match.group(1)) <= job.stop:
                curve.append([log_time(match.group(1)) - job.start, float(match.group(4))])
    predictions = job.folder / "test_predictions.xyz"
    forces, energy = (None, None) if job.note else mace_test_errors(predictions)
    label = f"MACE {args.mace_channels}x L{args.mace_max_L} ν{args.mace_correlation}"
    interval = None if job.start is None else [job.start, job.stop]
    return record("mace", job, label, curve, interval, forces, energy)


# -- the run and its report ------------------------------------------------------------------
def run_job(job: Job, args: argparse.Namespace) -> None:
    """Run one command; a failure becomes the job's note (the other contenders go on)."""
    print(f"[{time.strftime('%H:%M:%S')}] start {job.name}", flush=True)
    try:
        (run_mace if job.models == ["mace"] else run_ours)(job, args)
    except Exception as error:  # reported in the table and results.json
        job.note = f"{type(error).__name__}: {error}"
    done = f"failed: {job.note}" if job.note else "done"
    print(f"[{time.strftime('%H:%M:%S')}] {done} {job.name}", flush=True)


def job_records(job: Job, args: argparse.Namespace) -> list[dict]:
    if job.models != ["mace"]:
        return ours_records(job)
    try:
        return [mace_record(job, args)]
    except (OSError, KeyError, RuntimeError) as error:  # unreadable predictions
        job.note = f"cannot read MACE's test predictions: {error}"
        return [failed_record("mace", job)]


def mark_beside(records: list[dict]) -> None:
    """Name in each record the runs that trained at the same time (over a second)."""
    for run in records:
        run["beside"] = [
            f"{other['label']} seed {other['seed']}"
            for other in records
            if other is not run
            and run["interval"] is not None
            and other["interval"] is not None
            and min(run["interval"][1], other["interval"][1])
            - max(run["interval"][0], other["interval"][0])
            > 1.0
        ]


def summarize(records: list[dict]) -> dict[str, dict]:
    """Per contender, the mean (and standard deviation) over seeds of the test errors."""
    summary = {}
    for label in dict.fromkeys(run["label"] for run in records):
        runs = [run for run in records if run["label"] == label]
        entry = {"seeds": [run["seed"] for run in runs]}
        for key in ("test_forces_mae", "test_energy_mae", "best_val_forces_mae", "epochs"):
            values = [run[key] for run in runs if run[key] is not None]
            entry[key] = statistics.fmean(values) if values else None
            entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary[label] = entry
    return summary


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(records: list[dict], summary: dict[str, dict], budget: float) -> str:
    """The runs, then the mean over seeds per contender."""
    header = (f"{'model':<26} {'seed':>4} {'epochs':>6} {'val F':>7} {'test F':>7} "
              f"{'test E':>7}  ran beside")  # fmt: skip
    title = (f"Ethanol, {budget:g} s of training each on one thread; MAEs: forces meV/Å "
             "(validation: best epoch), energy meV per structure")  # fmt: skip
    lines = [title, header, "-" * len(header)]
    for run in records:
        lines.append(
            f"{run['label']:<26} {run['seed']:>4} {run['epochs']:>6} "
            f"{_number(run['best_val_forces_mae']):>7} {_number(run['test_forces_mae']):>7} "
            f"{_number(run['test_energy_mae']):>7}  {', '.join(run['beside']) or 'alone'}"
            + (f"  [{run['note']}]" if run["note"] else "")
        )
    if any(len(entry["seeds"]) > 1 for entry in summary.values()):
        lines += ["", "mean over seeds:"]
        for label, entry in summary.items():
            spread = entry["test_forces_mae_std"]
            spread = "" if spread is None else f" ± {_number(spread)}"
            lines.append(
                f"{label:<26} test F {_number(entry['test_forces_mae'])}{spread}, test E "
                f"{_number(entry['test_energy_mae'])} ({len(entry['seeds'])} seeds)"
            )
    return "\n".join(lines)


def plot_curves(records: list[dict], path: Path, budget: float) -> bool:
    """Draw the validation force MAE of every run against its training seconds (one colour
    per contender, one line per seed) into ``path``; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    colours: dict[str, str] = {}
    for run in records:
        if not run["curve"]:
            continue
        first = run["label"] not in colours
        colour = colours.setdefault(run["label"], f"C{len(colours)}")
        seconds, mae = zip(*run["curve"])
        ax.plot(seconds, mae, color=colour, lw=1.3, marker=".", markersize=4,
                label=run["label"] if first else None)  # fmt: skip
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlim(0, budget)
    ax.set_xlabel("training seconds, one thread each")
    ax.set_ylabel("validation force MAE (meV/Å)")
    ax.set_title("Ethanol (rMD17): 900 training structures")
    ax.grid(True, which="both", alpha=0.3)
    if colours:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def mace_settings(args: argparse.Namespace) -> dict:
    keys = ("channels", "max_L", "max_ell", "correlation", "r_max", "dtype")
    return {key: getattr(args, f"mace_{key}") for key in keys}


def protocol(args: argparse.Namespace, missing: str) -> dict:
    """The settings every run shared, for results.json."""
    return {
        "budget_seconds": args.budget,
        "threads_per_run": 1,
        "parallel": args.parallel,
        "batch_size": args.batch_size,
        "ema_decay": args.ema_decay,
        "data": {
            "train_and_validation": str(TRAIN_FILE.relative_to(REPO)),
            "test": str(TEST_FILE.relative_to(REPO)),
            "e0s": str(ISOLATED_FILE.relative_to(REPO)),
        },
        "mace": {"skipped": missing} if missing else mace_settings(args),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    missing = mace_missing(args.mace_python) if "mace" in args.models else ""
    if missing:
        print(f"MACE skipped: {missing}", flush=True)
    jobs = plan_jobs(args, missing)
    args.out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        if job.models == ["mace"]:
            prepare_mace(job)
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda job: run_job(job, args), jobs))
    records = [run for job in jobs for run in job_records(job, args)]
    mark_beside(records)
    summary = summarize(records)
    results = {"protocol": protocol(args, missing), "runs": records, "summary": summary}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print()
    print(format_table(records, summary, args.budget))
    if plot_curves(records, args.out / "learning_curves.png", args.budget):
        print(f"plot: {args.out / 'learning_curves.png'}")
    print(f"numbers: {args.out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
