"""Training across processes (torchrun, Gloo on this CPU): the same steps as one process,
rank 0 alone writing; the runtime's device and dtype; the per-epoch history files."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from e3nn_pyg.training import ConfigError, load_checkpoint, train
from e3nn_pyg.training.distributed import Runtime, setup_runtime

FLAGS = [
    "--dataset", "fixture", "--num-molecules", "60", "--model.hidden-Rs", "4x0e+2x1o",
    "--model.num-layers", "2", "--model.cutoff", "4", "--model.num-basis", "4",
    "--model.radial-hidden", "8", "--baseline.hidden-channels", "8", "--baseline.num-filters",
    "8", "--baseline.num-interactions", "1", "--baseline.num-gaussians", "8",
    "--batch-size", "7", "--no-progress", "--dtype", "float64", "--device", "cpu",
    "--num-threads", "1",
]  # fmt: skip


def run_cli(
    processes: int, out, data_root, *extra: str, flags: list[str] = FLAGS
) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "e3nn_pyg.cli"]
    if processes > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "e3nn_pyg.cli",
        ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    command = [*launcher, "train", *flags, "--data-root", data_root, "--out", str(out), *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def final_parameters(out, model: str = "equivariant_net") -> dict[str, torch.Tensor]:
    state = load_checkpoint(out / model / "last.pt")["model_state"]
    return {name: value for name, value in state.items() if torch.is_tensor(value)}


def assert_same_parameters(a, b, tolerance: float = 1e-10) -> None:
    """Equal up to float64 rounding: absolutely, and relatively for large parameters (the
    two ranks' gradients are averaged in another order than one rank's sum; SchNet's
    atomref rows of ~2700 eV then drift by up to ~1e-12 relative over two epochs, which
    failed one CI run at the absolute tolerance alone)."""
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == torch.float64
        torch.testing.assert_close(a[name], b[name], atol=tolerance, rtol=1e-12)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("qm9_cache"))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, data_root):
    """The same run (batches of 7 molecules: shares of 4 and 3, a last batch of 6) in one
    process and in two."""
    root = tmp_path_factory.mktemp("ddp")
    one = run_cli(1, root / "one", data_root, "--epochs", "2", "--baseline", "schnet")
    two = run_cli(2, root / "two", data_root, "--epochs", "2", "--baseline", "schnet")
    return root, one, two


def test_two_processes_take_the_steps_of_one(one_and_two):
    root, _, _ = one_and_two
    for model in ("equivariant_net", "schnet"):
        assert_same_parameters(
            final_parameters(root / "one", model), final_parameters(root / "two", model)
        )
    history = [json.loads((root / run / "metrics.json").read_text()) for run in ("one", "two")]
    for key in ("test_mae", "best_val_mae"):
        assert history[0]["results"]["schnet"][key] == pytest.approx(
            history[1]["results"]["schnet"][key], rel=1e-9
        )


MANY_BODY = [
    "--dataset", "fixture", "--num-molecules", "30", "--model", "many-body",
    "--model.num-channels", "4", "--model.cutoff", "4", "--model.radial-hidden", "8",
    "--batch-size", "7", "--no-progress", "--dtype", "float64", "--device", "cpu",
    "--num-threads", "1", "--epochs", "1",
]  # fmt: skip


@pytest.mark.slow
def test_two_processes_train_the_many_body_model_as_one(tmp_path, data_root):
    """ManyBodyNet (its element-dependent weights: rows of species absent from a process's
    share get zero gradients there) takes the steps of one process in two."""
    runs = []
    for processes in (1, 2):
        run_cli(processes, tmp_path / str(processes), data_root, flags=MANY_BODY)
        runs.append(final_parameters(tmp_path / str(processes), "many_body"))
    assert_same_parameters(*runs)


def test_rank_zero_alone_logs_and_metrics_record_the_world(one_and_two):
    root, one, two = one_and_two
    assert two.stdout.count("EquivariantNet epoch   1:") == 1
    assert "over 2 processes" in two.stdout and "over" not in one.stdout.split("\n")[1]
    metrics = json.loads((root / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_batch_size"] == 7
    assert metrics["dtype"] == "float64" and metrics["device"] == "cpu"
    assert json.loads((root / "one" / "metrics.json").read_text())["world_size"] == 1


def test_resume_under_two_processes_continues_exactly(tmp_path, data_root):
    """Without a schedule, 1 epoch + 1 resumed epoch in 2 processes = 2 epochs in 1."""
    straight = run_cli(1, tmp_path / "straight", data_root, "--epochs", "2", "--scheduler", "none")
    assert straight.returncode == 0
    run_cli(2, tmp_path / "resumed", data_root, "--epochs", "1", "--scheduler", "none")
    run_cli(2, tmp_path / "resumed", data_root, "--epochs", "2", "--scheduler", "none", "--resume")
    assert_same_parameters(
        final_parameters(tmp_path / "straight"), final_parameters(tmp_path / "resumed")
    )


def test_time_budget_read_on_rank_zero_stops_every_rank(tmp_path, data_root):
    """The ranks' clocks differ: rank 0's decides (a disagreement would hang the run)."""
    run_cli(
        2,
        tmp_path / "run",
        data_root,
        "--epochs",
        "1000",
        "--time-budget",
        "2",
        "--patience",
        "1000",
    )
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())["results"]
    assert result["equivariant_net"]["stop_reason"] == "time budget"
    assert 1 < result["equivariant_net"]["epochs"] < 1000


def test_history_csv_has_one_row_per_epoch_after_a_resume(tmp_path, data_root):
    run_cli(1, tmp_path / "run", data_root, "--epochs", "1")
    run_cli(1, tmp_path / "run", data_root, "--epochs", "3", "--resume")
    with open(tmp_path / "run" / "equivariant_net" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert {"train_loss", "val_mae", "lr", "molecules_per_second"} <= rows[0].keys()
    checkpoint = load_checkpoint(tmp_path / "run" / "equivariant_net" / "best.pt")
    assert checkpoint["model_state"]["embedding.weight"].dtype == torch.float64


def test_runtime_of_one_process():
    runtime = setup_runtime("cpu", "float64")
    assert runtime == Runtime(torch.device("cpu"), torch.float64, rank=0, world_size=1)
    assert runtime.is_main and not runtime.distributed
    assert runtime.sum({"b": 2, "a": 1.0}) == {"a": 1.0, "b": 2.0}
    assert runtime.from_main(2.5) == 2.5
    indices = torch.arange(7)
    assert Runtime(torch.device("cpu"), torch.float32, 1, 3).share(indices).tolist() == [1, 4]
    lines = []
    assert Runtime(torch.device("cpu"), torch.float32, 1, 3).logger(lines.append)("x") is None
    assert lines == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_work(tiny_config):
    with pytest.raises(ConfigError, match="no CUDA device"):
        train(tiny_config(device="cuda"))


def test_tensorboard_events_when_installed(tmp_path, data_root):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    run_cli(1, tmp_path / "run", data_root, "--epochs", "2")
    events = event_accumulator.EventAccumulator(
        str(tmp_path / "run" / "equivariant_net" / "tensorboard")
    )
    events.Reload()
    assert [event.step for event in events.Scalars("val_mae")] == [1, 2]


def test_a_run_on_every_device_loads_on_the_cpu(device, tiny_config):
    metrics = train(tiny_config(device=device.type), log=lambda line: None)
    assert metrics["device"].startswith(device.type)
    checkpoint = load_checkpoint(metrics["results"]["equivariant_net"]["checkpoint"])
    tensors = [t for t in checkpoint["model_state"].values() if torch.is_tensor(t)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


@pytest.mark.parametrize(
    ("world", "batch_size", "splits", "refusal"),
    [
        (2, 1, {}, "batch_size 1 is smaller than the 2 processes"),
        (8, 7, {"training": 100}, "batch_size 7 is smaller than the 8 processes"),
        (4, 8, {"training": 3, "validation": 10}, "training split holds 3 structures, fewer "
         "than the 4 processes"),
        (4, 8, {"training": 100, "validation": 3}, "validation split holds 3 structures"),
        (3, 3, {"training": 3, "validation": 0}, "validation split holds 0 structures"),
    ],
)  # fmt: skip
def test_a_process_without_data_is_refused(world, batch_size, splits, refusal):
    for rank in (0, world - 1):  # every rank takes the same decision
        runtime = Runtime(torch.device("cpu"), torch.float32, rank, world)
        with pytest.raises(ConfigError, match=refusal):
            runtime.require_data(batch_size, splits)


@pytest.mark.parametrize(
    ("world", "batch_size", "splits"),
    [(1, 1, {"training": 1, "validation": 1}), (2, 2, {"training": 2, "validation": 2}),
     (3, 7, {"training": 4, "validation": 3}), (4, 4, None)],
)  # fmt: skip
def test_every_process_with_data_is_accepted(world, batch_size, splits):
    Runtime(torch.device("cpu"), torch.float32, 0, world).require_data(batch_size, splits)


@pytest.mark.parametrize(
    ("world", "batch_size", "refusal"),
    [(17, 16, "batch_size 16 is smaller than the 17 processes"),
     (40, 40, "training split holds 32 structures, fewer than the 40"),
     (5, 16, "validation split holds 4 structures, fewer than the 5")],
)  # fmt: skip
def test_the_trainer_refuses_splits_too_small_for_the_world(tiny_config, tmp_path, world,
                                                             batch_size, refusal):  # fmt: skip
    """40 molecules split 32/4/4: refused before any training (no process group needed)."""
    from e3nn_pyg.training import Trainer, fit_target_stats, load_data
    from e3nn_pyg.training.run import model_config

    config = tiny_config(batch_size=batch_size)
    data = load_data(config, log=False)
    stats = fit_target_stats(data, config.resolved_readout)
    arguments = model_config("equivariant-net", config, stats, 10.0)
    runtime = Runtime(torch.device("cpu"), torch.float32, 0, world)
    with pytest.raises(ConfigError, match=refusal):
        Trainer("m", "equivariant-net", arguments, data, stats, config, tmp_path, 1e-3,
                runtime=runtime)  # fmt: skip
    assert not (tmp_path / "last.pt").exists()


def test_two_processes_with_a_batch_of_one_are_refused_before_loading(tmp_path):
    """A real torchrun of 2 processes: the one-line refusal, exit 2, no step, no data."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "e3nn_pyg.cli"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    flags = [*FLAGS, "--batch-size", "1", "--epochs", "1"]
    command = [*launcher, "train", *flags, "--data-root", str(tmp_path / "cache"), "--out",
               str(tmp_path / "run")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0
    assert "e3nn-pyg: error: batch_size 1 is smaller than the 2 processes" in result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert not (tmp_path / "run" / "equivariant_net" / "last.pt").exists()
