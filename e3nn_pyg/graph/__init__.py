r"""Graphs: which atoms talk to which in a point convolution.

==========================  ==================================================================
:mod:`.radius`              :func:`radius_graph`, the edges between atoms closer than a cutoff
:mod:`.periodic`            :func:`periodic_radius_graph` of crystals, slabs and wires, and
                            :func:`cartesian_shifts` of its edges
:mod:`.prepared`            :func:`prepare_graph`: the :class:`Graph` value that every
                            convolution of a forward pass accepts
:mod:`.validation`          :func:`validate_pos`, :func:`validate_batch`, :func:`validate_cell`
:mod:`.search`              the search backends (dense blocks, cell list, ``torch_cluster``)
==========================  ==================================================================

Each public function validates its inputs; the models, which validate theirs once at their
entry, call the unchecked cores (``_radius_edges``, ``_periodic_edges``). :class:`Graph` and
:func:`prepare_graph` are imported on first use: they need torch_geometric, which the
search and the checks do not (``e3nn_pyg.testing`` imports the checks).
"""

# the unchecked cores and shared pieces that other modules of the package use
from .periodic import _periodic_edges as _periodic_edges
from .periodic import _shift_vectors as _shift_vectors
from .periodic import cartesian_shifts, periodic_radius_graph
from .radius import _radius_edges as _radius_edges
from .radius import radius_graph
from .search import NeighborTruncationWarning
from .search import _squared_norm as _squared_norm
from .validation import _validate_options as _validate_options
from .validation import validate_batch, validate_cell, validate_pos

__all__ = [
    "Graph",
    "NeighborTruncationWarning",
    "cartesian_shifts",
    "periodic_radius_graph",
    "prepare_graph",
    "radius_graph",
    "validate_batch",
    "validate_cell",
    "validate_pos",
]


def __getattr__(name: str) -> object:
    if name in ("Graph", "prepare_graph"):
        from . import prepared

        return getattr(prepared, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
