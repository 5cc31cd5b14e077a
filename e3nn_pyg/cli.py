r"""The ``e3nn-pyg`` command: ``train``, ``evaluate``, ``predict`` and ``export``.

.. code-block:: console

    $ e3nn-pyg train --dataset qm9 --target U0 --num-molecules 3000 --time-budget 200 \
          --baseline schnet --out runs/demo
    $ e3nn-pyg train --data train.xyz --model many-body --model.correlation 2 --out runs/mb
    $ e3nn-pyg train --config runs/demo/config.yaml --resume      # continue after Ctrl-C
    $ e3nn-pyg evaluate --checkpoint runs/demo/equivariant_net/best.pt --split test
    $ e3nn-pyg train --data train.xyz --test-data test.xyz --baseline schnet --out runs/eth
    $ e3nn-pyg evaluate --checkpoint runs/eth/equivariant_net/best.pt --data test.xyz --json
    $ e3nn-pyg predict --checkpoint runs/demo/equivariant_net/best.pt --xyz molecules.xyz
    $ e3nn-pyg export --checkpoint runs/demo/equivariant_net/best.pt --out model.pt2
    $ e3nn-pyg export --checkpoint runs/demo/equivariant_net/best.pt --out model.pt2 --aoti
    $ e3nn-pyg export --checkpoint runs/eth/equivariant_net/best.pt --out graph.pt2 \
          --graph-input                       # (z, edge_vec, edge_index): an MD engine's edges
    $ torchrun --nproc_per_node=2 -m e3nn_pyg.cli train ...   # data-parallel processes

Every key of :class:`~e3nn_pyg.training.TrainConfig` is a flag of ``train``
(``num_molecules`` is ``--num-molecules``, ``model: {num_layers: 2}`` is
``--model.num-layers 2``, the model's ``name`` is ``--model`` and the baseline's
``--baseline``); flags override the values of ``--config``, and ``--model`` naming another
kind than the file's starts from that kind's defaults. The help of a ``--model.*`` flag
says which model kinds take it. Each flag's help ends with the values it takes, written from
the setting's limits (``one of {l1, mse}``, ``in (0, 1), or null``); ``null`` (or ``none``)
sets a setting that may be null, e.g. ``--ema-decay null``.
``evaluate``, ``predict`` and ``export`` refuse elements the checkpoint's model was not
trained on, naming them, unless ``--allow-unseen-elements`` is given; they need nothing of
the run but the checkpoint (``evaluate`` of a split reads the run's data).
``export --graph-input`` writes a potential's program on the caller's neighbour list
(:func:`~e3nn_pyg.models.graph_input.save_graph_potential`), which checks no input: the
engine passes elements of the metadata's ``species`` and the edges within its ``cutoff``.
User mistakes (an unknown target, a config key with a wrong type, an unreadable checkpoint,
...) print one line ``e3nn-pyg: error: ...`` that says what to fix and exit with status 2;
Ctrl-C during training saves a checkpoint and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .progress import tqdm_if_installed
from .training import (
    ConfigError,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    export_checkpoint,
    predict_xyz,
    train,
)
from .training.registry import BASELINES, MODEL_KINDS, MODELS, SECTIONS
from .training.settings import Setting

__all__ = ["build_parser", "main"]

PROG = "e3nn-pyg"
_NULL = ("null", "none")  # how a command line spells a null setting


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (status 2) instead of usage text and a message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def _flag(key: str) -> str:
    """``model.num_layers`` -> ``--model.num-layers``; ``model.name`` -> ``--model``."""
    section, _, name = key.rpartition(".")
    if section in SECTIONS and name == "name":
        return f"--{section}"
    return "--" + key.replace("_", "-")


def _plain(text: str) -> str:
    """Docstring markup as plain text: ``:class:`~a.B``` -> ``B``, double backquotes off."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _value_type(setting: Setting) -> Callable[[str], Any]:
    """The argparse type of a setting: its Python type, with ``null`` (or ``none``) for
    :obj:`None` where the setting may be null."""
    convert = {"int": int, "float": float}.get(setting.kind, str)
    if not setting.optional:
        return convert

    def value(text: str) -> Any:
        return None if text.lower() in _NULL else convert(text)

    value.__name__ = convert.__name__  # argparse names the type in its messages
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; a flag that is not given leaves the setting alone
    (``argparse.SUPPRESS``), so that ``--ema-decay null`` can set null."""
    for key, setting in TrainConfig.settings().items():
        help_text = f"{_plain(setting.help)} ({setting.offers()})".replace("%", "%%")
        common = {"dest": key, "default": argparse.SUPPRESS, "help": help_text}
        if setting.kind == "bool":
            parser.add_argument(_flag(key), action=argparse.BooleanOptionalAction, **common)
        elif setting.kind == "split":
            parser.add_argument(_flag(key), type=float, nargs=3,
                                metavar=("TRAIN", "VAL", "TEST"), **common)  # fmt: skip
        else:
            parser.add_argument(_flag(key), type=_value_type(setting),
                                metavar=key.rsplit(".", 1)[-1].upper(), **common)  # fmt: skip


def _config_flags(args: argparse.Namespace) -> dict:
    """The values of the config flags given, as a (nested) mapping."""
    values: dict = {}
    for key in TrainConfig.settings():
        if hasattr(args, key):
            section, _, name = key.rpartition(".")
            (values.setdefault(section, {}) if section else values)[name] = getattr(args, key)
    return values


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that uses a checkpoint takes."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="best.pt or last.pt of a run")  # fmt: skip
    parser.add_argument("--allow-unseen-elements", action="store_true",
                        help="take elements the model was not trained on (refused by "
                        "default: its predictions for them have no meaning)")  # fmt: skip


_TRAIN_DESCRIPTION = (
    "Train the model --model names ("
    + ", ".join(f"{name} ({MODEL_KINDS[name].label})" for name in MODELS)
    + f"; default {SECTIONS['model'].name.default}) and --baseline ({', '.join(BASELINES)}) "
    "on a seeded split, then print the test MAE table and write checkpoints, metrics.json "
    "and plots to --out."
)


def _add_export_parser(commands: argparse._SubParsersAction) -> None:
    """The ``export`` command."""
    export_parser = commands.add_parser(
        "export", help="export a checkpoint's model with torch.export (a .pt2 file)",
        description="Write the inference model of a checkpoint, with its metadata, as a "
        "torch.export program, loaded with import torch, e3nn_pyg: "
        "torch.export.load(path).module()(z, pos, batch), or (z, pos, batch, cell, pbc) for a "
        "model trained on periodic structures; with --aoti as an AOTInductor package, "
        "torch._inductor.aoti_load_package(path)(z, pos, batch). A potential's program "
        "returns (energy, forces), and the stress when periodic. With --graph-input, a "
        "potential's program on the caller's neighbour list: (z, edge_vec, edge_index) -> "
        "(atom_energy, energy, forces, pair_forces), edge_vec = pos[j] - pos[i] + shift for "
        "the edges (j, i) within the cutoff, both directions (see "
        "e3nn_pyg.models.graph_input).",
    )  # fmt: skip
    _add_checkpoint_arguments(export_parser)
    export_parser.add_argument("--out", required=True, metavar="FILE",
                               help="the .pt2 file to write")  # fmt: skip
    export_parser.add_argument("--aoti", action="store_true",
                               help="write an AOTInductor package (compiled C++: needs a C++ "
                               "compiler and takes minutes)")  # fmt: skip
    export_parser.add_argument("--graph-input", action="store_true",
                               help="write a potential's graph-input program for MD engines "
                               "with their own neighbour lists, called (z, edge_vec, "
                               "edge_index) and returning (atom_energy, energy, forces, "
                               "pair_forces); with --aoti as a package")  # fmt: skip


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
        "train", help="train a model (and a baseline) and report test MAEs",
        description=_TRAIN_DESCRIPTION,
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
    _add_checkpoint_arguments(evaluate_parser)
    evaluate_parser.add_argument("--split", default="test", help="train, val or test")
    evaluate_parser.add_argument("--data-root", metavar="DIR", help="dataset cache folder")
    evaluate_parser.add_argument("--data", metavar="FILE",
                                 help="structures to evaluate a potential on: the file has "
                                 "energies, and forces or stresses where it has them; a "
                                 "structure is scored on the labels it carries (all of them; "
                                 "--split is not used)")  # fmt: skip
    evaluate_parser.add_argument("--json", action="store_true",
                                 help="print the metrics as one JSON object")  # fmt: skip

    predict_parser = commands.add_parser(
        "predict", help="predict the target of a checkpoint for molecules in an XYZ file",
        description="Print (or write as CSV) the predictions of a checkpoint.",
    )  # fmt: skip
    _add_checkpoint_arguments(predict_parser)
    predict_parser.add_argument("--xyz", required=True, metavar="FILE",
                                help="molecules as XYZ blocks (symbol x y z in Å)")  # fmt: skip
    predict_parser.add_argument("--output", metavar="CSV", help="write a CSV file")

    _add_export_parser(commands)
    return parser


def _log(progress: bool):
    """Lines that do not break the progress bars (``tqdm.write``) when there are bars."""
    bars = tqdm_if_installed() if progress else None
    return bars.write if bars is not None else print


def _train(args: argparse.Namespace) -> None:
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    config = config.updated(_config_flags(args))
    train(config, resume=args.resume, overwrite=args.overwrite, log=_log(config.progress))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``e3nn-pyg``; returns the exit status (0, 2 for user mistakes, 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            log = (lambda line: None) if args.json else print
            result = evaluate(args.checkpoint, split=args.split, data_root=args.data_root,
                              data=args.data, log=log,
                              allow_unseen_elements=args.allow_unseen_elements)  # fmt: skip
            if args.json:
                print(json.dumps(result, default=float))
        elif args.command == "predict":
            predict_xyz(args.checkpoint, args.xyz, output=args.output,
                        allow_unseen_elements=args.allow_unseen_elements)  # fmt: skip
        else:
            export_checkpoint(args.checkpoint, args.out, aoti=args.aoti,
                              allow_unseen_elements=args.allow_unseen_elements,
                              graph_input=args.graph_input)  # fmt: skip
    except (ConfigError, TrainingDiverged) as error:  # what to change, in one line
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
