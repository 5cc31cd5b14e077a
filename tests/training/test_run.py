"""A whole run on the fixture: files, the MAE table, evaluate and predict from checkpoints."""

import json
from pathlib import Path

import pytest
import torch

from e3nn_pyg.training import (
    ConfigError,
    TrainConfig,
    evaluate,
    format_table,
    load_data,
    predict_xyz,
    read_xyz,
    train,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root, tiny):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig.from_dict({**tiny, "data_root": data_root, "out": str(out),
                                    "baseline": "schnet"})  # fmt: skip
    lines = []
    metrics = train(config, log=lines.append)
    return config, out, metrics, lines


def test_files_and_metrics(run):
    _, out, metrics, _ = run
    for name in ("config.yaml", "metrics.json", "test_predictions.csv", "learning_curves.png",
                 "parity.png", "equivariant_net/best.pt", "equivariant_net/last.pt",
                 "schnet/best.pt", "schnet/last.pt"):  # fmt: skip
        assert (out / name).exists(), name
    for png in ("learning_curves.png", "parity.png"):
        assert (out / png).read_bytes()[:8] == PNG
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    results = metrics["results"]
    assert list(results) == ["equivariant_net", "schnet", "per_element_linear", "mean_predictor"]
    assert metrics["mae_unit"] == "meV" and metrics["split"] == {"train": 32, "val": 4, "test": 4}
    for result in results.values():
        assert result["test_mae"] > 0
    # the offsets alone already beat the mean by orders of magnitude on U0
    assert results["per_element_linear"]["test_mae"] < 0.01 * results["mean_predictor"]["test_mae"]
    rows = (out / "test_predictions.csv").read_text().splitlines()
    assert rows[0] == "name,dft_eV,EquivariantNet_eV,SchNet_eV" and len(rows) == 5


def test_the_table_is_printed(run):
    _, _, metrics, lines = run
    text = "\n".join(lines)
    table = format_table(metrics)
    assert table in text
    for label in ("EquivariantNet", "SchNet", "per-element linear fit", "mean predictor"):
        assert label in table
    assert "learning_curves.png" in text and "parity.png" in text


def test_evaluate_reproduces_the_test_mae(run):
    _, out, metrics, _ = run
    for name in ("equivariant_net", "schnet"):
        result = evaluate(out / name / "best.pt", log=lambda line: None)
        assert result["mae"] == pytest.approx(metrics["results"][name]["test_mae"], rel=1e-9)
        assert result["num_molecules"] == 4 and result["mae_unit"] == "meV"
    val = evaluate(out / "equivariant_net" / "best.pt", split="val", log=lambda line: None)
    assert val["mae"] == pytest.approx(metrics["results"]["equivariant_net"]["best_val_mae"])
    with pytest.raises(ConfigError, match="unknown split"):
        evaluate(out / "equivariant_net" / "best.pt", split="dev")


def test_predict_xyz_matches_the_test_predictions(run, tmp_path):
    config, out, _, _ = run
    data = load_data(config, log=False)
    test = data.subset("test")
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    blocks = []
    for i in range(len(test)):
        molecule = test[i]
        atoms = "".join(f"{symbols[int(z)]} {x:.8f} {y:.8f} {w:.8f}\n"
                        for z, (x, y, w) in zip(molecule.z, molecule.pos.tolist()))  # fmt: skip
        blocks.append(f"{molecule.num_nodes}\n{molecule.name}\n{atoms}")
    (tmp_path / "test.xyz").write_text("".join(blocks))
    values = predict_xyz(out / "equivariant_net" / "best.pt", tmp_path / "test.xyz",
                         output=tmp_path / "predictions.csv", log=lambda line: None)  # fmt: skip
    expected = [float(row.split(",")[2]) for row in
                (out / "test_predictions.csv").read_text().splitlines()[1:]]  # fmt: skip
    assert values == pytest.approx(expected, abs=2e-3)  # 1e-8 Å rounding of the XYZ
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines[0] == "index,comment,U0_eV" and lines[1].startswith(f"1,{test[0].name},")


def test_an_existing_run_is_not_overwritten_silently(run):
    config, _, _, _ = run
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        train(config, log=lambda line: None)
    with pytest.raises(ConfigError, match="exclude each other"):
        train(config, resume=True, overwrite=True, log=lambda line: None)


def test_resume_of_a_finished_run_reports_again(run):
    config, _, metrics, _ = run
    again = train(config, resume=True, log=lambda line: None)
    for name in ("equivariant_net", "schnet"):
        assert again["results"][name]["test_mae"] == metrics["results"][name]["test_mae"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "holds no molecule"),
        ("two\ncomment\nH 0 0 0\n", "line 1: expected the number of atoms"),
        ("2\ncomment\nH 0 0 0\n", "does not fit the file"),
        ("1\ncomment\nXx 0 0 0\n", "line 3: expected 'symbol x y z'"),
        ("1\ncomment\nH 0 0\n", "line 3"),
    ],
)
def test_read_xyz_errors(tmp_path, text, match):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_xyz(path)


def test_read_xyz(tmp_path):
    path = tmp_path / "water.xyz"
    path.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\n1 -0.24 0.93 0\n\n1\nion\nF 0 0 0\n")
    molecules = read_xyz(path)
    assert [m[0] for m in molecules] == ["water", "ion"]
    assert torch.equal(molecules[0][1], torch.tensor([8, 1, 1]))
    assert molecules[0][2].shape == (3, 3)
    with pytest.raises(ConfigError, match="cannot read"):
        read_xyz(Path(tmp_path / "missing.xyz"))


def test_the_export_check_counts_a_nan_in_one_output_as_infinitely_far():
    """The check of ``export``: NaN in both outputs is equal (a molecule's stress); NaN in
    only one of them must never vanish in the maximum."""
    from e3nn_pyg.training.run import _differences

    want = torch.tensor([[1.0, float("nan")], [-300.0, 2.0]])
    assert _differences([(want.clone(), want)]) == (0.0, 0.0)
    error, relative = _differences([(want + 3e-3, want)])
    assert error == pytest.approx(3e-3, rel=1e-3) and relative == pytest.approx(1e-5, rel=1e-3)
    for got in (torch.where(want.isnan(), 0.0, want), want.nan_to_num(0.0).fill_(float("nan"))):
        assert _differences([(want + 1.0, want), (got, want)])[1] == float("inf")
