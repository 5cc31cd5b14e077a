"""The chemical elements: symbols by atomic number, the one table the package reads them
from, and the one bound on the atomic numbers it takes.

>>> CHEMICAL_SYMBOLS[8], atomic_number("Cl"), atomic_number("cl")
('O', 17, 17)
>>> MAX_Z, CHEMICAL_SYMBOLS[MAX_Z - 1]
(100, 'Es')
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CHEMICAL_SYMBOLS", "MAX_Z", "atomic_number", "element_names"]

#: Atomic numbers lie below ``MAX_Z``: H (1) to Es (99). It is the size of every table indexed
#: by atomic number (a model's element embedding, ``atomref``, reference energies E0s), the
#: size PyG gives them (:class:`~torch_geometric.nn.models.SchNet`'s embedding,
#: ``torch_geometric.datasets.QM9.atomref``), so that the tables of this package and of
#: PyG's models fit each other. The heavier elements are synthetic: no data set has them.
MAX_Z = 100

#: ``CHEMICAL_SYMBOLS[Z]`` is the symbol of atomic number ``Z`` (index 0: ``"X"``, no element).
CHEMICAL_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
    "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am "
    "Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()

_NUMBERS = {symbol.lower(): z for z, symbol in enumerate(CHEMICAL_SYMBOLS) if z}


def atomic_number(symbol: str) -> int:
    """The atomic number of an element symbol (any letter case).

    Raises:
        KeyError: for a string that names no element.
    """
    try:
        return _NUMBERS[symbol.strip().lower()]
    except (KeyError, AttributeError):
        raise KeyError(f"{symbol!r} is not an element symbol") from None


def element_names(numbers: Iterable[int]) -> str:
    """Elements for a message, by symbol and atomic number in increasing order:
    ``"H (Z=1), O (Z=8)"`` (``"Z=130"`` for a number without symbol).

    >>> element_names([8, 1, 8])
    'H (Z=1), O (Z=8)'
    """
    named = len(CHEMICAL_SYMBOLS)
    return ", ".join(
        f"{CHEMICAL_SYMBOLS[z]} (Z={z})" if 0 < z < named else f"Z={z}"
        for z in sorted({int(z) for z in numbers})
    )
