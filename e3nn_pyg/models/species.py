r"""The elements a model takes: atomic numbers below ``max_z``, and among them the species
it was trained on.

A model trained on H, C, N and O has never seen chlorine: its embedding row for Z = 17 is
the random initialisation, and a prediction for a molecule with chlorine is a number
without meaning. A model built with ``species`` (the sorted atomic numbers of its training
data) therefore refuses other elements, with one line naming them, unless the caller sets
the model's plain attribute ``allow_unseen_elements = True`` (the command line's
``--allow-unseen-elements``, the ASE calculator's ``allow_unseen_elements=True``).

>>> validate_species([8, 1, 6, 1], max_z=100)
[1, 6, 8]
>>> table = species_table([1, 6, 8], 100)
>>> check_atomic_numbers(torch.tensor([1, 17]), 100, table)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: z holds elements the model was not trained on: Cl (Z=17); it was trained on ...
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral

import torch
from torch import Tensor, nn

from ..checks import require, require_atomic_numbers, require_index_range
from ..elements import element_names

__all__ = [
    "check_atomic_numbers",
    "check_model_atomic_numbers",
    "register_species",
    "species_table",
    "validate_species",
]


def validate_species(species: Iterable[int] | None, max_z: int) -> list[int] | None:
    """``species`` as a sorted list of distinct atomic numbers in ``[1, max_z)`` (a plain
    value for a model's config), or ``None``.

    Raises:
        TypeError: for something that is not a collection of ints.
        ValueError: for an empty collection or an atomic number outside ``[1, max_z)``.
    """
    if species is None:
        return None
    if isinstance(species, (str, bytes)) or not isinstance(species, Iterable):
        raise TypeError(f"species must be a list of atomic numbers or None, got {species!r}")
    values = species.tolist() if isinstance(species, Tensor) else list(species)
    if not all(isinstance(z, Integral) and not isinstance(z, bool) for z in values):
        raise TypeError(f"species must hold atomic numbers (ints), got {values!r}")
    values = [int(z) for z in values]  # (NumPy integers too)
    if not values:
        raise ValueError("species must name at least one element (or be None: any element)")
    outside = sorted({z for z in values if not 1 <= z < max_z})
    if outside:
        raise ValueError(f"species must lie in [1, {max_z}) (max_z), got {outside}")
    return sorted(set(values))


def species_table(species: list[int] | None, max_z: int) -> Tensor | None:
    """Whether each atomic number is a species, bool ``[max_z]`` (``None`` for ``None``)."""
    if species is None:
        return None
    table = torch.zeros(max_z, dtype=torch.bool)  # [max_z]
    table[species] = True
    return table


def check_atomic_numbers(z: Tensor, max_z: int, table: Tensor | None) -> None:
    """Check atomic numbers ``z`` ``[N]``: a 1-D long tensor with entries in ``[0, max_z)``
    and, when ``table`` (of :func:`species_table`) is given, only species of the model.
    The value checks work eagerly and as graph assertions (:func:`~e3nn_pyg.checks.require`).

    Raises:
        TypeError: for a ``z`` that is not a 1-D ``torch.long`` tensor.
        ValueError: for an atomic number outside ``[0, max_z)`` or not in the table, naming
            the elements by symbol and atomic number.
    """
    require_atomic_numbers(z)
    require_index_range(z, max_z, "z holds atomic number", ValueError)
    if table is None:
        return
    # (clamped: compiled assertions do not stop the indexing that follows them)
    known = table.index_select(0, z.clamp(0, max_z - 1))  # [N]

    def detail() -> str:
        trained = torch.nonzero(table).flatten().tolist()
        return (
            f"z holds elements the model was not trained on: {element_names(z[~known].tolist())}"
            f"; it was trained on {element_names(trained)} (set allow_unseen_elements to "
            "predict them anyway)"
        )

    require(known.all(), ValueError, "z holds elements the model was not trained on", detail)


def register_species(model: nn.Module, species: Iterable[int] | None, max_z: int) -> None:
    """Give ``model`` its ``species`` (validated, part of its config), the attribute
    ``allow_unseen_elements = False`` (not part of the config) and the non-persistent buffer
    ``species_mask`` (:func:`species_table`) that :func:`check_model_atomic_numbers` reads."""
    model.species = validate_species(species, max_z)
    model.allow_unseen_elements = False
    table = species_table(model.species, max_z)  # [max_z] bool, or None
    model.register_buffer("species_mask", table, persistent=False)


def check_model_atomic_numbers(model: nn.Module, z: Tensor) -> None:
    """:func:`check_atomic_numbers` of ``z`` for a model set up by :func:`register_species`
    (with its ``max_z``): its species, unless ``model.allow_unseen_elements``."""
    known = None if model.allow_unseen_elements else model.species_mask
    check_atomic_numbers(z, model.max_z, known)
