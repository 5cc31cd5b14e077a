"""``python -m e3nn_pyg.datasets --make-fixture`` or ``--process``: see :func:`qm9.main`."""

from .qm9 import main

main()
