"""``python -m e3nn_pyg.datasets``: write the QM9 fixture, or process QM9 into the cache.

.. code-block:: console

    $ python -m e3nn_pyg.datasets --process                 # all of QM9 (needs qm9pack)
    $ python -m e3nn_pyg.datasets --process --subset 1000   # the first 1,000 molecules
    $ python -m e3nn_pyg.datasets --make-fixture            # rewrite the shipped fixture
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from .fixture import FIXTURE_PATH, make_fixture
from .qm9 import QM9Pack, default_root

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``python -m e3nn_pyg.datasets`` with the arguments ``argv`` (default: sys.argv)."""
    parser = argparse.ArgumentParser(
        prog="python -m e3nn_pyg.datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--make-fixture", action="store_true", help="write the test fixture")
    action.add_argument("--process", action="store_true", help="process QM9 into the cache")
    parser.add_argument("--output", default=str(FIXTURE_PATH), help="fixture path")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixture's draw")
    parser.add_argument("--root", default=None, help=f"cache folder (default: {default_root()})")
    parser.add_argument("--subset", type=int, default=None, help="first N molecules only")
    args = parser.parse_args(argv)
    if args.make_fixture:
        count = make_fixture(args.output, seed=args.seed)
        size = os.path.getsize(args.output)
        print(f"wrote {count} molecules to {args.output} ({size / 1e3:.0f} kB)")
        return
    start = time.perf_counter()
    dataset = QM9Pack(args.root, subset=args.subset, force_reload=True)
    seconds = time.perf_counter() - start
    path = dataset.processed_paths[0]
    size = os.path.getsize(path) / 1e6
    print(f"processed {len(dataset)} molecules in {seconds:.1f} s into {path} ({size:.1f} MB)")
