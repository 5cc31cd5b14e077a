"""Time the symmetric contraction of MACE: ours against mace-torch's, one thread.

For each case (channels C, output irreps; input C x 0e+1o+2e+3o, correlation 3, 3 species,
N atoms) it times a forward (no autograd) and a force-training step (forward, gradient of
an energy with respect to the features with ``create_graph=True``, then a backward of a
loss of the energy and that gradient, as the potentials train), and prints the medians and
the ratios MACE / ours.

mace-torch pins an older e3nn, so it lives in its own environment: ``--peer-python`` names
that interpreter, which runs this script again as a worker (``--serve mace``). The two
contenders alternate: each round times ours, then asks the worker for its times (one JSON
line per request on its stdin, one line of JSON times back on its stdout), so a change of machine
load hits both. Without ``--peer-python`` only ours is timed.

Times are thread CPU times (``time.thread_time``), which a loaded machine inflates less
than wall-clock times; both processes run at one thread.

    python benchmarks/bench_contraction.py
    python benchmarks/bench_contraction.py --peer-python /work/main/.venv-mace/bin/python
    python benchmarks/bench_contraction.py --channels 32 --outputs 0e --dtype float64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch

INPUT_IRREPS = ("0e", "1o", "2e", "3o")
STEPS = ("forward", "force step")
_MARK = "times: "  # the worker's answer lines start with this


def _rs(channels: int, irreps: str) -> str:
    return "+".join(f"{channels}x{ir}" for ir in irreps.split("+"))


def _steps(module: Callable, x: torch.Tensor, species: torch.Tensor) -> dict[str, Callable]:
    """The timed callables: a forward without autograd, and a force-training step."""

    def forward() -> None:
        with torch.no_grad():
            module(x, species)

    def force_step() -> None:
        out = module(x, species)
        energy = out.sum()
        (grad,) = torch.autograd.grad(energy, x, create_graph=True)
        (energy + grad.pow(2).sum()).backward()

    return {"forward": forward, "force step": force_step}


def ours(case: dict) -> dict[str, Callable]:
    from e3nn_pyg.tensor_product import SymmetricContraction

    dtype = getattr(torch, case["dtype"])
    rs_in = _rs(case["channels"], "+".join(INPUT_IRREPS))
    module = SymmetricContraction(rs_in, _rs(case["channels"], case["out"]), 3, case["species"])
    module = module.to(dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case["atoms"], module.Rs_in.dim, generator=generator, dtype=dtype)
    species = torch.randint(0, case["species"], (case["atoms"],), generator=generator)
    return _steps(module, x.requires_grad_(), species)


def mace(case: dict) -> dict[str, Callable]:
    warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS")
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    dtype = getattr(torch, case["dtype"])
    torch.set_default_dtype(dtype)  # mace builds its U matrices in the default dtype
    module = SymmetricContraction(
        irreps_in=o3.Irreps(_rs(case["channels"], "+".join(INPUT_IRREPS))),
        irreps_out=o3.Irreps(_rs(case["channels"], case["out"])),
        correlation=3,
        num_elements=case["species"],
    ).to(dtype)
    generator = torch.Generator().manual_seed(0)
    dim = sum(2 * int(ir[0]) + 1 for ir in INPUT_IRREPS)
    x = torch.randn(case["atoms"], case["channels"], dim, generator=generator, dtype=dtype)
    species = torch.randint(0, case["species"], (case["atoms"],), generator=generator)
    one_hot = torch.nn.functional.one_hot(species, case["species"]).to(dtype)  # [N, S]
    return _steps(module, x.requires_grad_(), one_hot)


CONTENDERS = {"ours": ours, "mace": mace}


def _time(fn: Callable, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return times


def serve(name: str) -> None:
    """The worker: build on the first request of a case, then time it per request."""
    torch.set_num_threads(1)
    built: dict[str, dict[str, Callable]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = json.dumps(request["case"], sort_keys=True)
        if key not in built:
            built[key] = CONTENDERS[name](request["case"])
            for fn in built[key].values():
                fn()  # warm-up
        times = {step: _time(fn, request["repeats"]) for step, fn in built[key].items()}
        print(_MARK + json.dumps(times), flush=True)


class Peer:
    """mace-torch's times, from a worker in another interpreter."""

    def __init__(self, python: str) -> None:
        # e3nn 0.4.4 (mace-torch's pin) loads its own constants file with torch.load, which
        # torch >= 2.6 refuses by default (weights_only): allow it for that trusted file
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        self.process = subprocess.Popen(
            [python, __file__, "--serve", "mace"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def times(self, case: dict, repeats: int) -> dict[str, list[float]]:
        self.process.stdin.write(json.dumps({"case": case, "repeats": repeats}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:  # (mace prints notes of its own on stdout)
            if line.startswith(_MARK):
                return json.loads(line[len(_MARK) :])
        raise RuntimeError("the mace-torch worker stopped (see its error above)")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def run_case(case: dict, peer: Peer | None, rounds: int, repeats: int) -> dict[str, dict]:
    mine = ours(case)
    for fn in mine.values():
        fn()  # warm-up
    times: dict[str, dict[str, list[float]]] = {"ours": {s: [] for s in STEPS}}
    if peer is not None:
        times["mace"] = {s: [] for s in STEPS}
    for _ in range(rounds):  # alternate: ours, then mace, every round
        for step in STEPS:
            times["ours"][step] += _time(mine[step], repeats)
        if peer is not None:
            for step, values in peer.times(case, repeats).items():
                times["mace"][step] += values
    return {
        who: {step: 1e3 * statistics.median(values) for step, values in steps.items()}
        for who, steps in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--outputs", nargs="+", default=["0e", "0e+1o"])
    parser.add_argument("--atoms", type=int, default=200)
    parser.add_argument("--species", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timings per round")
    parser.add_argument("--peer-python", help="the interpreter of an environment with mace")
    parser.add_argument("--serve", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    torch.set_num_threads(1)
    peer = Peer(args.peer_python) if args.peer_python else None
    print(
        f"symmetric contraction, input Cx{'+'.join(INPUT_IRREPS)}, correlation 3, "
        f"{args.species} species, {args.atoms} atoms, {args.dtype}, 1 thread; medians of "
        f"{args.rounds} x {args.repeats} thread CPU times (ms)"
    )
    if peer is None:
        print("mace-torch skipped (no --peer-python)")
    header = f"{'C':>4} {'out':>6} {'step':>11} {'ours':>9}"
    print(header + (f" {'mace':>9} {'mace/ours':>10}" if peer else ""))
    try:
        for channels in args.channels:
            for out in args.outputs:
                case = {"channels": channels, "out": out, "atoms": args.atoms}
                case.update(species=args.species, dtype=args.dtype)
                result = run_case(case, peer, args.rounds, args.repeats)
                for step in STEPS:
                    row = f"{channels:>4} {out:>6} {step:>11} {result['ours'][step]:>9.2f}"
                    if peer is not None:
                        theirs = result["mace"][step]
                        row += f" {theirs:>9.2f} {theirs / result['ours'][step]:>10.2f}"
                    print(row, flush=True)
    finally:
        if peer is not None:
            peer.close()


if __name__ == "__main__":
    main()
