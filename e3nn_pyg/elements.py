"""The chemical elements: symbols by atomic number, the one table the package reads them from.

>>> CHEMICAL_SYMBOLS[8], atomic_number("Cl"), atomic_number("cl")
('O', 17, 17)
"""

from __future__ import annotations

__all__ = ["CHEMICAL_SYMBOLS", "atomic_number"]

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
