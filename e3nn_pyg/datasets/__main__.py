"""``python -m e3nn_pyg.datasets --make-fixture`` or ``--process``: see :func:`build.main`."""

from .build import main

main()
