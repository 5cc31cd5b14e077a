"""``e3nn_pyg.load``: the model of any checkpoint the package writes, in a fresh process."""

import subprocess
import sys

import pytest
import torch

from e3nn_pyg.cli import main
from e3nn_pyg.training import load_checkpoint, model_from_checkpoint

# A fresh process that imports torch and e3nn_pyg alone (argv: the inputs, where to write,
# the checkpoints): the predictions of every checkpoint's model, its dtype and mode, and
# the error of loading a file that is no checkpoint (the inputs file).
FRESH_PROCESS = """
import sys
import torch, e3nn_pyg
inputs, out, *checkpoints = sys.argv[1:]
z, pos, batch = torch.load(inputs)
results = []
for checkpoint in checkpoints:
    model = e3nn_pyg.load(checkpoint)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        results.append((model(z, pos.to(dtype), batch), str(dtype), model.training))
try:
    e3nn_pyg.load(inputs)
except ValueError as error:
    results.append(str(error))
torch.save(results, out)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny float64 run on the fixture, with the SchNet baseline."""
    out = tmp_path_factory.mktemp("load") / "run"
    argv = ["train", "--dataset", "fixture", "--num-molecules", "40", "--model.hidden-Rs",
            "4x0e+2x1o", "--model.num-layers", "2", "--model.cutoff", "4",
            "--model.radial-hidden", "8", "--model.num-basis", "4", "--epochs", "1",
            "--batch-size", "16", "--no-progress", "--dtype", "float64", "--baseline", "schnet",
            "--baseline.hidden-channels", "8", "--baseline.num-filters", "8",
            "--baseline.num-interactions", "1", "--baseline.num-gaussians", "8",
            "--data-root", str(out.parent / "cache"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


def test_load_gives_every_checkpoint_model_in_a_fresh_process(run, tmp_path):
    checkpoints = [run / "equivariant_net" / "best.pt", run / "equivariant_net" / "last.pt",
                   run / "schnet" / "best.pt"]  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    z = torch.tensor([6, 1, 1, 1, 1, 8, 1, 1])
    pos = 1.2 * torch.randn(8, 3, generator=generator, dtype=torch.float64)
    inputs = (z, pos, torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]))
    torch.save(inputs, tmp_path / "inputs.pt")
    script = [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "inputs.pt"),
              str(tmp_path / "out.pt"), *map(str, checkpoints)]  # fmt: skip
    result = subprocess.run(script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    *loaded, error = torch.load(tmp_path / "out.pt")
    for checkpoint, (prediction, dtype, training) in zip(checkpoints, loaded, strict=True):
        model = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint).eval()
        with torch.no_grad():
            expected = model(*inputs)
        assert dtype == "torch.float64" and not training
        torch.testing.assert_close(prediction, expected, atol=1e-12, rtol=1e-12)
    assert error.startswith(f"{tmp_path / 'inputs.pt'} is not an e3nn-pyg checkpoint")
