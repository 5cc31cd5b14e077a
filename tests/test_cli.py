"""The e3nn-pyg command: train / evaluate / predict with a tiny budget on the fixture, and a
one-line error (status 2, no traceback) for every user mistake."""

import copy
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import e3nn_pyg
from e3nn_pyg.cli import _config_flags, build_parser, main
from e3nn_pyg.export import read_metadata
from e3nn_pyg.graph import cartesian_shifts, periodic_radius_graph
from e3nn_pyg.models import GraphPotential, ManyBodyNet
from e3nn_pyg.models.graph_input import GraphOutputs, edge_vectors
from e3nn_pyg.training import TrainConfig, load_checkpoint, model_from_checkpoint
from e3nn_pyg.training.registry import SECTIONS
from e3nn_pyg.training.run import check_models

TINY = [
    "--dataset", "fixture", "--num-molecules", "40", "--model.hidden-Rs", "4x0e+2x1o",
    "--model.num-layers", "2", "--model.cutoff", "4", "--model.radial-hidden", "8",
    "--model.num-basis", "4",
    "--epochs", "2", "--batch-size", "16", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qm9_cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("cli") / "run"
    status = main(["train", *TINY, "--data-root", data_root, "--out", str(out)])
    assert status == 0
    return out


def run_main(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *pieces):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("e3nn-pyg: error: "), err
    assert "Traceback" not in err
    for piece in pieces:
        assert piece in lines[0], (piece, lines[0])


def test_train_writes_a_run(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["target"] == "U0" and metrics["config"]["epochs"] == 2
    assert set(metrics["results"]) == {"equivariant_net", "per_element_linear", "mean_predictor"}
    assert (trained / "parity.png").exists() and (trained / "learning_curves.png").exists()


def test_train_from_a_config_file_with_flags_on_top(tmp_path, data_root, capsys):
    (tmp_path / "run.yaml").write_text(
        "dataset: fixture\nnum_molecules: 40\nmodel:\n  hidden_Rs: 4x0e + 2x1o\n  num_layers: 2\n"
        f"  radial_hidden: 8\nepochs: 5\nbatch_size: 16\nprogress: false\ndata_root: {data_root}\n"
        "target: gap\n"
    )
    out = tmp_path / "run"
    status, stdout, _ = run_main(
        ["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "1", "--out", str(out)],
        capsys,
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == 1 and metrics["target"] == "gap"
    assert metrics["config"]["model"]["num_layers"] == 2
    assert "Test MAE of gap" in stdout and "meV" in stdout


def test_evaluate_and_predict(trained, tmp_path, data_root, capsys):
    checkpoint = str(trained / "equivariant_net" / "best.pt")
    status, stdout, _ = run_main(["evaluate", "--checkpoint", checkpoint], capsys)
    assert status == 0 and "test MAE of U0 on 4 molecules" in stdout
    (tmp_path / "water.xyz").write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    status, stdout, _ = run_main(
        ["predict", "--checkpoint", checkpoint, "--xyz", str(tmp_path / "water.xyz")], capsys
    )
    lines = stdout.strip().splitlines()
    assert status == 0 and lines[0] == "index,comment,U0_eV"
    assert lines[1].startswith("1,water,") and -3000 < float(lines[1].split(",")[2]) < -1000


def test_export_equals_the_checkpoint_model(trained, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    status, stdout, _ = run_main(
        ["export", "--checkpoint", str(trained / "equivariant_net" / "best.pt"), "--out", str(out)],
        capsys,
    )
    assert status == 0 and "torch.export.load" in stdout and "read_metadata" in stdout
    module = torch.export.load(out).module()  # (a fresh process: test_export.py)
    model = model_from_checkpoint(load_checkpoint(trained / "equivariant_net" / "best.pt"), "")
    z = torch.tensor([6, 1, 1, 1, 1, 8, 1, 1])
    pos = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    torch.testing.assert_close(module(z, pos, batch), model(z, pos, batch), atol=1e-6, rtol=1e-6)
    metadata = read_metadata(out)
    assert metadata["target"] == {"name": "U0", "unit": "eV"} and metadata["outputs"] == ["U0"]
    assert metadata["format"] == "torch.export" and metadata["species"] == model.species


@pytest.mark.slow  # (compiles C++: a minute or more)
def test_export_aoti_equals_the_checkpoint_model(trained, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    checkpoint = trained / "equivariant_net" / "best.pt"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--aoti"]
    status, stdout, _ = run_main(argv, capsys)
    assert status == 0 and "torch._inductor.aoti_load_package" in stdout
    package = torch._inductor.aoti_load_package(str(out))
    model = model_from_checkpoint(load_checkpoint(checkpoint), "")
    z = torch.tensor([6, 1, 1, 1, 1, 8, 1, 1])
    pos = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    prediction = package(z, pos, batch)
    torch.testing.assert_close(prediction, model(z, pos, batch), atol=1e-6, rtol=1e-6)
    assert read_metadata(out)["format"] == "aoti"


def test_export_refuses_schnet_and_bad_paths(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data-root", data_root, "--out", str(run), "--epochs", "1",
                 "--baseline", "schnet"]) == 0  # fmt: skip
    capsys.readouterr()
    schnet = str(run / "schnet" / "best.pt")
    status, _, err = run_main(
        ["export", "--checkpoint", schnet, "--out", str(tmp_path / "m")], capsys
    )
    assert_one_line_error(status, err, "schnet model", "EquivariantNet or ManyBodyNet checkpoints")
    ours = str(run / "equivariant_net" / "best.pt")
    missing = str(tmp_path / "missing" / "m.pt2")
    status, _, err = run_main(["export", "--checkpoint", ours, "--out", missing], capsys)
    assert_one_line_error(status, err, "existing folder")
    text = str(tmp_path / "model.txt")
    status, _, err = run_main(["export", "--checkpoint", ours, "--out", text], capsys)
    assert_one_line_error(status, err, "--out: path", "must end in .pt2")


def test_resume_and_overwrite(trained, data_root, capsys):
    base = ["train", *TINY, "--data-root", data_root, "--out", str(trained)]
    status, _, err = run_main(base, capsys)
    assert_one_line_error(status, err, "already holds a run", "--resume", "--overwrite")
    status, _, _ = run_main([*base, "--resume", "--epochs", "3"], capsys)
    assert status == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["results"]["equivariant_net"]["epochs"] == 3


def test_resume_without_a_checkpoint_or_of_other_data_is_refused_before_training(
    trained, tmp_path, data_root, capsys, monkeypatch
):
    import e3nn_pyg.training.run as run

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the resume was checked")

    monkeypatch.setattr(run, "load_data", no_data)
    base = ["train", *TINY, "--data-root", data_root, "--resume"]
    status, _, err = run_main([*base, "--out", str(tmp_path / "empty")], capsys)
    assert_one_line_error(status, err, "holds no checkpoint to continue", "without --resume")
    status, _, err = run_main([*base, "--out", str(trained), "--target", "gap"], capsys)
    assert_one_line_error(status, err, "target='U0'", "target='gap'")
    # a checkpoint of another model kind where EquivariantNet's belongs
    other = tmp_path / "other"
    (other / "equivariant_net").mkdir(parents=True)
    payload = load_checkpoint(trained / "equivariant_net" / "last.pt")
    torch.save({**payload, "kind": "schnet"}, other / "equivariant_net" / "last.pt")
    status, _, err = run_main([*base, "--out", str(other)], capsys)
    assert_one_line_error(status, err, "model kind='schnet'", "model kind='equivariant-net'")


def test_checkpoint_from_a_different_model_config(trained, data_root, capsys):
    argv = ["train", *TINY, "--data-root", data_root, "--out", str(trained), "--resume",
            "--model.num-layers", "3"]  # fmt: skip
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, "num_layers=2", "num_layers=3", "another --out")


#: a many-body model of the same size class as TINY's, for one quick epoch
TINY_MANY_BODY = [
    "--dataset", "fixture", "--num-molecules", "40", "--model", "many-body",
    "--model.num-channels", "4", "--model.lmax", "1", "--model.hidden-lmax", "1",
    "--model.correlation", "2", "--model.num-layers", "1", "--model.cutoff", "4",
    "--model.radial-hidden", "8", "--model.num-basis", "4", "--model.readout-hidden", "4",
    "--epochs", "1", "--batch-size", "16", "--no-progress",
]  # fmt: skip


def test_the_many_body_model_trains_evaluates_predicts_and_exports(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    status, stdout, _ = run_main(["train", *TINY_MANY_BODY, "--data-root", data_root,
                                  "--out", str(run)], capsys)  # fmt: skip
    assert status == 0 and "ManyBodyNet" in stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["results"]) == {"many_body", "per_element_linear", "mean_predictor"}
    assert metrics["config"]["model"]["correlation"] == 2
    checkpoint = run / "many_body" / "best.pt"
    payload = load_checkpoint(checkpoint)
    assert payload["kind"] == "many-body" and payload["name"] == "ManyBodyNet"
    assert payload["model_config"]["correlation"] == 2
    status, stdout, _ = run_main(["evaluate", "--checkpoint", str(checkpoint)], capsys)
    assert status == 0 and "test MAE of U0 on 4 molecules" in stdout
    (tmp_path / "water.xyz").write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    status, stdout, _ = run_main(["predict", "--checkpoint", str(checkpoint),
                                  "--xyz", str(tmp_path / "water.xyz")], capsys)  # fmt: skip
    assert status == 0 and stdout.splitlines()[1].startswith("1,water,")
    status, _, _ = run_main(["export", "--checkpoint", str(checkpoint),
                             "--out", str(tmp_path / "mb.pt2")], capsys)  # fmt: skip
    assert status == 0
    module = torch.export.load(tmp_path / "mb.pt2").module()
    model = e3nn_pyg.load(checkpoint)
    assert isinstance(model, ManyBodyNet) and not model.training
    z, batch = torch.tensor([6, 1, 1, 1, 1, 8, 1, 1]), torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    pos = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(module(z, pos, batch), model(z, pos, batch), atol=1e-5, rtol=1e-5)
    # --resume of this run with the other model kind is refused, naming both
    status, _, err = run_main(["train", *TINY, "--data-root", data_root, "--out", str(run),
                               "--resume"], capsys)  # fmt: skip
    assert_one_line_error(status, err, f"holds a run of many-body ({checkpoint.parent}",
                          "this run trains --model equivariant-net",
                          "resume with --model many-body")  # fmt: skip


@pytest.mark.parametrize(
    "argv, pieces",
    [
        (["train", "--model", "dimenet"], ["unknown model.name 'dimenet'", "many-body"]),
        (
            ["train", "--model.correlation", "2"],
            [
                "'model.correlation' in command line is a setting of model many-body",
                "and model is equivariant-net",
                "--model many-body",
            ],
        ),
        (
            ["train", "--model", "many-body", "--model.hidden-Rs", "4x0e"],
            ["'model.hidden_Rs'", "setting of model equivariant-net", "model is many-body"],
        ),
        (
            ["train", "--model", "many-body", "--model.lmax", "1", "--model.hidden-lmax", "2"],
            ["invalid model settings: hidden_lmax = 2 must not exceed lmax = 1"],
        ),
        (["train", "--target", "U00"], ["unknown target 'U00'", "U0_atom"]),
        (["train", "--dataset", "qm7"], ["unknown dataset 'qm7'", "qm9, fixture"]),
        (["train", "--epochs", "ten"], ["--epochs", "invalid int value"]),
        (["train", "--split", "0.8", "0.3", "0.1"], ["sum to at most 1"]),
        (["train", "--num-molecules", "5"], ["num_molecules must be >= 10"]),
        (["train", "--learning-rate", "1"], ["unrecognized arguments"]),
        (["fit"], ["invalid choice: 'fit'"]),
        (["evaluate"], ["--checkpoint"]),
        (["train", "--seed", "99999999999999999999"], ["seed must be in [0, 4294967295]"]),
        (["train", "--model.cutoff", "1e300"], ["model.cutoff must be in (0, 1000]"]),
        (["train", "--ema-decay", "nothing"], ["--ema-decay", "invalid float value"]),
    ],
)
def test_bad_arguments(argv, pieces, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    assert_one_line_error(status, capsys.readouterr().err, *pieces)


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("lr_rate: 0.1\n", ["unknown config key 'lr_rate'", "did you mean 'lr'"]),
        ("epochs: many\n", ["'epochs' must be an integer, got 'many'"]),
        ("lr: [1\n", ["not valid YAML at line"]),
        ("target: Uzero\n", ["unknown target 'Uzero'"]),
    ],
)
def test_bad_config_files(tmp_path, text, pieces, capsys):
    (tmp_path / "bad.yaml").write_text(text)
    status, _, err = run_main(["train", "--config", str(tmp_path / "bad.yaml")], capsys)
    assert_one_line_error(status, err, *pieces)


def test_missing_config_file(tmp_path, capsys):
    status, _, err = run_main(["train", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert_one_line_error(status, err, "cannot read config file")


def test_unreadable_checkpoints(tmp_path, capsys):
    (tmp_path / "broken.pt").write_text("this is not a checkpoint")
    for command in (["evaluate"], ["predict", "--xyz", "x.xyz"]):
        status, _, err = run_main([*command, "--checkpoint", str(tmp_path / "broken.pt")], capsys)
        assert_one_line_error(status, err, "cannot read checkpoint", "best.pt or last.pt")
    status, _, err = run_main(["evaluate", "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert_one_line_error(status, err, "does not exist")


# -- every value the help offers is accepted, every value outside the limits refused -----------
def _train_actions() -> dict:
    parser = build_parser()._subparsers._group_actions[0].choices["train"]
    return {action.dest: action for action in parser._actions}


#: what a setting needs of the others to be valid (its rules between settings)
_CONTEXT = {"test_data": ["--data", "a.xyz"], "isolated_atoms": ["--data", "a.xyz"]}
#: the same for a model kind's setting: (kind, key) -> flags
_KIND_CONTEXT = {("many-body", "model.lmax"): ["--model.hidden-lmax", "0"]}


def _offered(help_text: str, setting) -> list[list[str]]:
    """The values a flag's help offers, as command-line words: its choices, its closed
    bounds, a value inside its bounds, null where it says null, and its default."""
    help_text = help_text.replace("%%", "%")
    number = int if setting.kind == "int" else float
    words: list[list[str]] = []
    choices = re.search(r"one of \{([\w, ]+)\}", help_text)
    if choices:
        words += [[choice] for choice in choices.group(1).split(", ")]
    if "null" in help_text:
        words.append(["null"])
    bounds = re.search(r"in ([\[(])(-?[\d.]+), (-?[\d.]+)([\])])", help_text)
    if bounds and setting.kind != "split":  # (a split's fractions also sum to at most 1)
        low, high = number(bounds.group(2)), number(bounds.group(3))
        words.append([str(number((low + high) / 2))])
        words += [[bound] for bound, closed in ((bounds.group(2), bounds.group(1) == "["),
                                                (bounds.group(3), bounds.group(4) == "]"))
                  if closed]  # fmt: skip
    one_side = re.search(r"(>=|>|<=|<) (-?[\d.]+)", help_text)
    if one_side and not bounds:
        side, value = one_side.groups()
        words.append([str(number(value) + {">=": 0, ">": 1, "<=": 0, "<": -1}[side])])
        if side in (">=", "<="):
            words.append([value])
    if isinstance(setting.default, list):
        words.append([str(v) for v in setting.default])
    elif setting.default is not None and not isinstance(setting.default, bool):
        words.append([str(setting.default)])
    return [list(unique) for unique in dict.fromkeys(map(tuple, words))]


def _kind_settings():
    """Every setting as the command line takes it: ``(key, setting, context)``, a setting of
    a model kind once per kind that has it, with the flag that chooses the kind."""
    for key, setting in TrainConfig.settings().items():
        section, _, name = key.rpartition(".")
        if section not in SECTIONS or name == "name" or name in SECTIONS[section].extra:
            yield key, setting, _CONTEXT.get(key, [])
            continue
        for kind, kind_section in SECTIONS[section].sections.items():
            if name in kind_section.settings:
                context = [f"--{section}", kind, *_KIND_CONTEXT.get((kind, key), [])]
                yield key, kind_section.settings[name], context


def _offers():
    for key, setting, context in _kind_settings():
        action = _train_actions()[key]
        for words in _offered(setting.offers(), setting):
            label = " ".join([*context[1:2], f"{key}={' '.join(words)}"])
            yield pytest.param(key, action, setting, [*context], words, id=label)


@pytest.mark.parametrize("key, action, setting, context, words", list(_offers()))
def test_every_value_the_help_offers_is_accepted(key, action, setting, context, words):
    assert setting.offers() in action.help  # the help says what each kind takes
    flag = action.option_strings[0]
    args = build_parser().parse_args(["train", *context, flag, *words])
    config = TrainConfig().updated(_config_flags(args))
    section, _, name = key.rpartition(".")
    value = getattr(config, section)[name] if section else getattr(config, key)
    if words == ["null"]:
        assert value is None
    elif section and key not in ("model.readout", "baseline.name"):
        check_models(config)  # the model takes what its section offers


def _outside(setting) -> list[str]:
    """Values just outside a setting's limits."""
    limits = setting.limits
    if limits.choices is not None:
        return ["nonsense"]
    step = 1 if setting.kind == "int" else 0.5
    values = [limits.min - step if limits.min is not None else None,
              limits.max + step if limits.max is not None else None,
              limits.above, limits.below]  # fmt: skip
    return [str(v) for v in values if v is not None]


def _refusals():
    for key, setting, context in _kind_settings():
        for value in _outside(setting):
            label = " ".join([*context[1:2], f"{key}={value}"])
            yield pytest.param(key, setting, context, value, id=label)


@pytest.mark.parametrize("key, setting, context, value", list(_refusals()))
def test_every_value_outside_the_limits_is_refused_with_one_line(
    key, setting, context, value, capsys
):
    flag = _train_actions()[key].option_strings[0]
    words = [value] * 3 if setting.kind == "split" else [value]
    status, _, err = run_main(["train", *context, flag, *words], capsys)
    assert_one_line_error(status, err, key if setting.limits.choices else setting.limits.describe())


def test_every_config_key_is_a_flag_with_its_help():
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    flags = ["--num-molecules", "--time-budget", "--baseline", "--batch-size", "--lr", "--seed",
             "--out", "--model.hidden-Rs", "--baseline.hidden-channels", "--resume",
             "--overwrite", "--config", "--data", "--ema-decay"]  # fmt: skip
    for flag in flags:
        assert flag in help_text
    # the help of a model setting is the model's own docstring
    assert "width of the radial perceptron" in " ".join(help_text.split())


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    """The installed command path: a fresh interpreter, exit status 2, one line on stderr."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "e3nn_pyg.cli", "train", "--target", "nonsense"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "e3nn-pyg: error: unknown target 'nonsense': choose one of mu, alpha, homo, lumo, gap, "
        "r2, zpve, U0, U, H, G, cv, U0_atom, U_atom, H_atom, G_atom, A, B, C"
    ]


@pytest.mark.parametrize(
    "content, pieces",
    [
        (b"\xff\xfe\x00binary", ["is not UTF-8 text"]),
        (b"2\nc\nH 0 0 0\nH nan 0 0\n", ["line 4", "coordinates must be finite"]),
        (b"2\nc\nH 0 0 0\nH 1e39 0 0\n", ["line 4", "below 1e+06"]),
    ],
)
def test_hostile_xyz_files(trained, tmp_path, content, pieces, capsys):
    xyz = tmp_path / "in.xyz"
    xyz.write_bytes(content)
    checkpoint = str(trained / "equivariant_net" / "best.pt")
    status, _, err = run_main(["predict", "--checkpoint", checkpoint, "--xyz", str(xyz)], capsys)
    assert_one_line_error(status, err, *pieces)


def test_output_paths_below_a_file_and_binary_configs(trained, tmp_path, data_root, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    status, _, err = run_main(["train", *TINY, "--out", str(afile / "run")], capsys)
    assert_one_line_error(status, err, "cannot create --out", "Not a directory")
    xyz = tmp_path / "ok.xyz"
    xyz.write_text("2\nc\nH 0 0 0\nH 0.7 0 0\n")
    checkpoint = str(trained / "equivariant_net" / "best.pt")
    argv = ["predict", "--checkpoint", checkpoint, "--xyz", str(xyz), "--output", str(afile / "o")]
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, "cannot write --output")
    config = tmp_path / "run.yaml"
    config.write_bytes(b"epochs: 2\n\xff\xfe")
    status, _, err = run_main(["train", "--config", str(config)], capsys)
    assert_one_line_error(status, err, "is not UTF-8 text")


def test_an_unforeseen_error_is_still_one_line(trained, tmp_path, capsys, monkeypatch):
    import e3nn_pyg.cli

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(e3nn_pyg.cli, "evaluate", broken)
    argv = ["evaluate", "--checkpoint", str(trained / "equivariant_net" / "best.pt")]
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, "RuntimeError: something nobody foresaw", "E3NN_PYG_DEBUG")
    monkeypatch.setenv("E3NN_PYG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="nobody foresaw"):
        main(argv)


# -- export of periodic potentials, loaded in a fresh process ------------------------------
# What a fresh process that imports torch and e3nn_pyg alone gets of a potential's exported
# program (argv: the .pt2 file, its inputs, where to write its outputs, "aoti" for a package).
FRESH_PROCESS = """
import sys
import torch, e3nn_pyg
program, inputs, out = sys.argv[1:4]
if sys.argv[4:] == ["aoti"]:
    call = torch._inductor.aoti_load_package(program)
else:
    call = torch.export.load(program).module()
torch.save(tuple(call(*torch.load(inputs))), out)
"""


def fresh_process_outputs(program, inputs: tuple, folder, aoti: bool = False) -> tuple:
    """The outputs of the potential's program (or package, ``aoti``) in the file
    ``program`` for ``inputs``, called in a fresh process."""
    torch.save(inputs, folder / "inputs.pt")
    script = [sys.executable, "-c", FRESH_PROCESS, str(program), str(folder / "inputs.pt"),
              str(folder / "out.pt"), *(["aoti"] if aoti else [])]  # fmt: skip
    result = subprocess.run(script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return torch.load(folder / "out.pt")


@pytest.fixture(scope="module")
def copper(tmp_path_factory):
    """8 rattled copper crystals (4 atoms) with EMT energies and forces, in an xyz file."""
    ase_io = pytest.importorskip("ase.io")
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    structures = []
    for i in range(8):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.02 * i, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        structures.append(atoms)
    path = tmp_path_factory.mktemp("copper") / "cu.xyz"
    ase_io.write(path, structures)
    return structures, path


def train_copper(copper, folder, *flags: str):
    """Train a float64 potential on the copper crystals for an epoch (a second or two):
    the checkpoint."""
    argv = ["train", "--data", str(copper[1]), "--split", "0.5", "0.25", "0.25", *TINY[4:],
            "--model.cutoff", "3", "--dtype", "float64", "--epochs", "1", "--batch-size", "4",
            "--data-root", str(folder / "cache"), "--out", str(folder / "run"), *flags]  # fmt: skip
    assert main(argv) == 0
    return folder / "run" / "equivariant_net" / "best.pt"


@pytest.fixture(scope="module")
def copper_potential(copper, tmp_path_factory):
    """The checkpoint of a potential trained on the copper crystals."""
    return train_copper(copper, tmp_path_factory.mktemp("copper_run"))


def unseen_crystal(copper):
    """A copper crystal the run has not seen: ``(z, pos, cell)``, float64."""
    atoms = copper[0][-1].copy()
    atoms.rattle(0.05, seed=99)
    return (torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions),
            torch.as_tensor(atoms.cell.array))  # fmt: skip


def export_error(stdout: str) -> float:
    """The largest difference from the model that ``export`` reports."""
    return float(re.search(r"differs from the checkpoint's model by at most (\S+)\. ", stdout)[1])


# (trains and exports: seconds; tests/test_export.py loads a periodic program fast)
@pytest.mark.slow
def test_export_of_a_periodic_potential_takes_the_cell(copper, copper_potential, tmp_path, capsys):
    program = tmp_path / "cu.pt2"
    status, stdout, _ = run_main(
        ["export", "--checkpoint", str(copper_potential), "--out", str(program)], capsys
    )
    assert status == 0 and "called (z, pos, batch, cell, pbc)" in stdout
    z, pos, cell = unseen_crystal(copper)
    inputs = (z, pos, torch.zeros(4, dtype=torch.long), cell[None],
              torch.ones(1, 3, dtype=torch.bool))  # fmt: skip
    outputs = fresh_process_outputs(program, inputs, tmp_path)  # energy, forces, stress
    expected = model_from_checkpoint(load_checkpoint(copper_potential), "")(*inputs, stress=True)
    assert len(outputs) == 3 and outputs[0].dtype == torch.float64
    for output, value in zip(outputs, expected):
        torch.testing.assert_close(output, value, atol=1e-12, rtol=1e-12)
    assert read_metadata(program)["periodic"] is True


# -- export --graph-input: a potential on the caller's neighbour list -----------------------
def graph_call(copper, checkpoint) -> tuple[tuple, GraphOutputs, tuple]:
    """The graph program's inputs ``(z, edge_vec, edge_index)`` for a crystal the run has
    not seen (its radius graph, periodic images included), what the checkpoint's model
    gives on them (:class:`GraphPotential`), and the model's own ``(energy, forces)``."""
    z, pos, cell = unseen_crystal(copper)
    model = model_from_checkpoint(load_checkpoint(checkpoint), "")
    edge_index, shifts = periodic_radius_graph(pos, model.cutoff, cell, True)
    edge_shift = cartesian_shifts(shifts, cell, edge_index)
    inputs = (z, edge_vectors(pos, edge_index, edge_shift), edge_index)
    expected = GraphPotential(model)(z, pos, edge_index, edge_shift)
    own = model(z, pos, torch.zeros_like(z), cell[None], torch.ones(1, 3, dtype=torch.bool))
    return inputs, expected, own


def assert_graph_outputs(outputs, expected: GraphOutputs, own: tuple) -> None:
    """A graph program's outputs are those of :class:`GraphPotential` (float64, to
    rounding), its energy and forces the model's own."""
    assert len(outputs) == 4 and outputs[1].dtype == torch.float64
    for output, value in zip(outputs, expected, strict=True):
        torch.testing.assert_close(output, value, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(outputs[1], own[0][0, 0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(outputs[2], own[1], atol=1e-12, rtol=1e-12)


def test_export_graph_input_gives_the_model_numbers_in_a_fresh_process(
    copper, copper_potential, tmp_path, capsys
):
    program = tmp_path / "graph.pt2"
    argv = ["export", "--checkpoint", str(copper_potential), "--out", str(program),
            "--graph-input"]  # fmt: skip
    status, stdout, _ = run_main(argv, capsys)
    assert status == 0 and "called (z, edge_vec, edge_index) on a neighbour list" in stdout
    assert "torch.export.load" in stdout and export_error(stdout) < 1e-12
    metadata = read_metadata(program)
    assert metadata["interface"] == "graph" and metadata["format"] == "torch.export"
    assert metadata["inputs"] == ["z", "edge_vec", "edge_index"]
    assert metadata["outputs"] == ["atom_energy", "energy", "forces", "pair_forces"]
    assert metadata["cutoff"] == 3.0 and metadata["species"] == [29]
    assert metadata["dtype"] == "float64" and metadata["periodic"] is True
    inputs, expected, own = graph_call(copper, copper_potential)
    assert_graph_outputs(fresh_process_outputs(program, inputs, tmp_path), expected, own)


@pytest.mark.parametrize(
    "writer, flags", [("save_model", []), ("save_graph_potential", ["--graph-input"])]
)
def test_export_refuses_a_program_far_from_the_model(
    copper_potential, tmp_path, capsys, monkeypatch, writer, flags
):
    """The check on the test split runs the written program: one of other weights is
    refused, and its file removed."""
    import e3nn_pyg.training.run

    save = getattr(e3nn_pyg.training.run, writer)

    def save_another_model(model, *args, **kwargs):
        other = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in other.parameters():
                parameter.add_(0.1)
        return save(other, *args, **kwargs)

    monkeypatch.setattr(e3nn_pyg.training.run, writer, save_another_model)
    out = tmp_path / "g.pt2"
    status, _, err = run_main(["export", "--checkpoint", str(copper_potential), "--out",
                               str(out), *flags], capsys)  # fmt: skip
    pieces = ("differs from the checkpoint's model by", "relative to the size of the outputs",
              "the file was removed")  # fmt: skip
    assert_one_line_error(status, err, *pieces)
    assert not out.exists()


def test_export_graph_input_refuses_what_is_not_a_potential_of_atom_energies(
    trained, copper, tmp_path, capsys
):
    out = str(tmp_path / "graph.pt2")
    qm9 = str(trained / "equivariant_net" / "best.pt")
    status, _, err = run_main(["export", "--checkpoint", qm9, "--out", out, "--graph-input"],
                              capsys)  # fmt: skip
    assert_one_line_error(status, err, "--graph-input exports a potential", "predicts U0 of QM9",
                          "without --graph-input")  # fmt: skip
    mean = train_copper(copper, tmp_path, "--model.readout", "mean")
    capsys.readouterr()
    status, _, err = run_main(["export", "--checkpoint", str(mean), "--out", out,
                               "--graph-input"], capsys)  # fmt: skip
    assert_one_line_error(status, err, "--graph-input: the EquivariantNet has readout='mean'")
    assert not (tmp_path / "graph.pt2").exists()


@pytest.mark.slow  # (compiles C++: a minute or more)
def test_export_graph_input_aoti_gives_the_model_numbers_in_a_fresh_process(
    copper, copper_potential, tmp_path, capsys
):
    package = tmp_path / "graph.pt2"
    argv = ["export", "--checkpoint", str(copper_potential), "--out", str(package),
            "--graph-input", "--aoti"]  # fmt: skip
    status, stdout, _ = run_main(argv, capsys)
    assert status == 0 and "torch._inductor.aoti_load_package" in stdout
    assert export_error(stdout) < 1e-12
    metadata = read_metadata(package)
    assert metadata["interface"] == "graph" and metadata["format"] == "aoti"
    inputs, expected, own = graph_call(copper, copper_potential)
    outputs = fresh_process_outputs(package, inputs, tmp_path, aoti=True)
    assert_graph_outputs(outputs, expected, own)
