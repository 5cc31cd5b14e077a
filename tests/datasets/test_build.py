"""``python -m e3nn_pyg.datasets``: process QM9 into the cache, write the fixture."""

import importlib.util
import subprocess
import sys

import pytest

from e3nn_pyg.datasets.build import main

HAS_QM9PACK = importlib.util.find_spec("qm9pack") is not None
needs_qm9pack = pytest.mark.skipif(not HAS_QM9PACK, reason="qm9pack is not installed")


@needs_qm9pack
def test_process_command(tmp_path, capsys):
    main(["--process", "--root", str(tmp_path), "--subset", "5"])
    out = capsys.readouterr().out
    assert "processed 5 molecules" in out and "qm9pack_first5_v1.pt" in out


def test_an_action_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "one of the arguments --make-fixture --process is required" in capsys.readouterr().err


@pytest.mark.slow
def test_module_runs_as_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "e3nn_pyg.datasets", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--make-fixture" in result.stdout
