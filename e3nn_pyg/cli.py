r"""The ``e3nn-pyg`` command: ``train``, ``evaluate``, ``predict`` and ``export``.

.. code-block:: console

    $ e3nn-pyg train --dataset qm9 --target U0 --num-molecules 3000 --time-budget 200 \
          --baseline schnet --out runs/demo
    $ e3nn-pyg train --config runs/demo/config.yaml --resume      # continue after Ctrl-C
    $ e3nn-pyg evaluate --checkpoint runs/demo/equivariant_net/best.pt --split test
    $ e3nn-pyg predict --checkpoint runs/demo/equivariant_net/best.pt --xyz molecules.xyz
    $ e3nn-pyg export --checkpoint runs/demo/equivariant_net/best.pt --out model.pt2
    $ torchrun --nproc_per_node=2 -m e3nn_pyg.cli train ...   # data-parallel processes

Every key of :class:`~e3nn_pyg.training.TrainConfig` is a flag of ``train``
(``num_molecules`` is ``--num-molecules``); flags override the values of ``--config``.
User mistakes (an unknown target, a config key with a wrong type, an unreadable checkpoint,
...) print one line ``e3nn-pyg: error: ...`` that says what to fix and exit with status 2;
Ctrl-C during training saves a checkpoint and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from .progress import tqdm_if_installed
from .training import (
    ConfigError,
    TrainConfig,
    TrainingInterrupted,
    evaluate,
    export_checkpoint,
    predict_xyz,
    train,
)

__all__ = ["build_parser", "main"]

PROG = "e3nn-pyg"

_HELP = {
    "dataset": "qm9 (all of QM9, from the qm9pack package) or fixture (297 molecules, tests)",
    "data_root": "cache folder of the processed dataset (default: ~/.cache/e3nn_pyg/qm9)",
    "target": "QM9 target: mu alpha homo lumo gap r2 zpve U0 U H G cv U0_atom ... A B C",
    "num_molecules": "train on a random subset of this many molecules (default: all)",
    "split": "train, validation and test fractions",
    "seed": "seed of the subset, split, initialization and shuffling",
    "out": "output folder (checkpoints, metrics.json, plots)",
    "hidden_Rs": "hidden representation of the equivariant model",
    "lmax": "largest filter order (default: that of --hidden-Rs)",
    "num_layers": "interaction blocks of the equivariant model",
    "cutoff": "cutoff radius in Å (both models)",
    "num_basis": "Bessel functions of the radial model",
    "radial_hidden": "width of the radial perceptron",
    "radial_layers": "hidden layers of the radial perceptron",
    "kernel_mode": "channelwise or full",
    "readout": "add or mean over atoms (default: add for extensive targets)",
    "baseline": "also train PyG's SchNet on the same split and budget",
    "schnet_hidden": "SchNet hidden channels and filters",
    "schnet_interactions": "SchNet interaction blocks",
    "schnet_gaussians": "SchNet Gaussians of the distance expansion",
    "schnet_lr": "SchNet learning rate",
    "epochs": "at most this many epochs per model",
    "time_budget": "seconds of training per model (default: no limit)",
    "batch_size": "molecules per batch",
    "lr": "AdamW learning rate of the equivariant model",
    "weight_decay": "AdamW weight decay",
    "scheduler": "cosine, plateau or none",
    "warmup": "fraction of the budget for the linear warm-up (cosine)",
    "patience": "early stopping: epochs without a better validation MAE",
    "loss": "l1 or mse",
    "max_grad_norm": "gradient clipping norm",
    "num_threads": "torch threads (default: torch's choice)",
    "progress": "progress bars",
    "device": "auto (CUDA when present), cpu or cuda",
    "dtype": "float32 or float64 (models and data)",
}


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (status 2) instead of usage text and a message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    types = {"int": int, "float": float, "str": str}
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        annotation = str(field.type).replace(" | None", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        help_text = f"{_HELP[field.name]} (default: {default})"
        if annotation == "bool":
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)  # fmt: skip
        elif annotation == "list[float]":
            parser.add_argument(flag, dest=field.name, type=float, nargs=3, default=None,
                                metavar=("TRAIN", "VAL", "TEST"), help=help_text)  # fmt: skip
        else:
            parser.add_argument(flag, dest=field.name, type=types[annotation], default=None,
                                metavar=field.name.upper(), help=help_text)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``e3nn-pyg``."""
    parser = _Parser(
        prog=PROG,
        description="Train, evaluate and use E(3)-equivariant models on QM9 (e3nn_pyg).",
    )
    commands = parser.add_subparsers(dest="command", metavar="{train,evaluate,predict,export}",
                                     parser_class=_Parser)  # fmt: skip
    commands.required = True

    train_parser = commands.add_parser(
        "train", help="train the equivariant model (and baselines) and report test MAEs",
        description="Train EquivariantNet (and --baseline schnet) on a seeded split, then "
        "print the test MAE table and write checkpoints, metrics.json and plots to --out.",
    )  # fmt: skip
    train_parser.add_argument("--config", metavar="FILE",
                              help="YAML file of settings (keys as the flags, with _)")  # fmt: skip
    train_parser.add_argument("--resume", action="store_true",
                              help="continue the run in --out from its checkpoints")  # fmt: skip
    train_parser.add_argument("--overwrite", action="store_true",
                              help="replace the run in --out")  # fmt: skip
    _add_config_flags(train_parser)

    evaluate_parser = commands.add_parser(
        "evaluate", help="MAE of a checkpoint on a split of its dataset",
        description="Rebuild a checkpoint's model and dataset split and print its MAE.",
    )  # fmt: skip
    evaluate_parser.add_argument("--checkpoint", required=True, metavar="PATH",
                                 help="best.pt or last.pt of a run")  # fmt: skip
    evaluate_parser.add_argument("--split", default="test", help="train, val or test")
    evaluate_parser.add_argument("--data-root", metavar="DIR", help="dataset cache folder")

    predict_parser = commands.add_parser(
        "predict", help="predict the target of a checkpoint for molecules in an XYZ file",
        description="Print (or write as CSV) the predictions of a checkpoint.",
    )  # fmt: skip
    predict_parser.add_argument("--checkpoint", required=True, metavar="PATH",
                                help="best.pt or last.pt of a run")  # fmt: skip
    predict_parser.add_argument("--xyz", required=True, metavar="FILE",
                                help="molecules as XYZ blocks (symbol x y z in Å)")  # fmt: skip
    predict_parser.add_argument("--output", metavar="CSV", help="write a CSV file")

    export_parser = commands.add_parser(
        "export", help="export a checkpoint's model with torch.export (a .pt2 file)",
        description="Write the inference model of a checkpoint as a torch.export program, "
        "loaded with PyTorch alone: torch.export.load(path).module()(z, pos, batch).",
    )  # fmt: skip
    export_parser.add_argument("--checkpoint", required=True, metavar="PATH",
                               help="best.pt or last.pt of a run")  # fmt: skip
    export_parser.add_argument("--out", required=True, metavar="FILE", help="the .pt2 file")
    return parser


def _log(progress: bool):
    """Lines that do not break the progress bars (``tqdm.write``) when there are bars."""
    bars = tqdm_if_installed() if progress else None
    return bars.write if bars is not None else print


def _train(args: argparse.Namespace) -> None:
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = config.updated(flags)
    train(config, resume=args.resume, overwrite=args.overwrite, log=_log(config.progress))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``e3nn-pyg``; returns the exit status (0, 2 for user mistakes, 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            evaluate(args.checkpoint, split=args.split, data_root=args.data_root)
        elif args.command == "predict":
            predict_xyz(args.checkpoint, args.xyz, output=args.output)
        else:
            export_checkpoint(args.checkpoint, args.out)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        print(
            f"\n{PROG}: {interrupted}; continue with the same command plus --resume",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # not foreseen: still one line (the traceback on request)
        if os.environ.get("E3NN_PYG_DEBUG"):
            raise
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        print(
            f"{PROG}: error: {type(error).__name__}: {reason} (unexpected; set "
            "E3NN_PYG_DEBUG=1 for the traceback and please report it)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
