"""A seeded random split of any dataset into disjoint index sets (train, validation, test)."""

from __future__ import annotations

import math
from collections.abc import Sequence, Sized

import torch
from torch import Tensor

from ..checks import is_int

__all__ = ["random_split", "require_seed"]

_SEED_RANGE = (-(2**63), 2**64)  # what torch.Generator.manual_seed accepts


def require_seed(seed: object, name: str = "seed") -> None:
    """Raise unless ``seed`` is an int that :meth:`torch.Generator.manual_seed` accepts.

    >>> require_seed(2**70)
    Traceback (most recent call last):
    ...
    ValueError: seed must lie in [-2**63, 2**64), got 1180591620717411303424
    """
    if not is_int(seed):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    if not _SEED_RANGE[0] <= seed < _SEED_RANGE[1]:
        raise ValueError(f"{name} must lie in [-2**63, 2**64), got {seed}")


def random_split(
    dataset: Sized | int, sizes: Sequence[int] | Sequence[float], seed: int = 0
) -> tuple[Tensor, ...]:
    r"""Disjoint random index sets, reproducible from a seed.

    A permutation of ``range(n)`` drawn by ``torch.randperm`` with a generator seeded by
    ``seed`` is cut into consecutive pieces. Sizes are either counts (ints, summing to at
    most ``n``) or fractions (floats in :math:`[0, 1]` summing to at most 1); fraction
    boundaries are :math:`\lfloor n \sum_{j \le i} f_j \rfloor`, so fractions summing to 1
    use every index. Index a PyG dataset with the results: ``dataset[train]``.

    >>> train, val, test = random_split(10, [0.8, 0.1, 0.1], seed=0)
    >>> len(train), len(val), len(test)
    (8, 1, 1)

    Args:
        dataset (Sized or int): A dataset (its ``len``) or the number of items ``n``.
        sizes (sequence of int or float): Size of each piece.
        seed (int, optional): Seed of the permutation. (default: :obj:`0`)

    Returns:
        One ``long`` tensor of indices per entry of ``sizes``.
    """
    if isinstance(dataset, bool):
        raise TypeError("dataset must be a sized dataset or an int, got bool")
    if isinstance(dataset, int):
        n = dataset
    elif isinstance(dataset, Sized):
        n = len(dataset)
    else:
        raise TypeError(f"dataset must be a sized dataset or an int, got {type(dataset).__name__}")
    if n < 0:
        raise ValueError(f"dataset size must be >= 0, got {n}")
    require_seed(seed)
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
        raise TypeError(f"sizes must be a non-empty sequence of ints or floats, got {sizes!r}")
    if all(is_int(s) for s in sizes):
        if any(s < 0 for s in sizes) or sum(sizes) > n:
            raise ValueError(f"sizes {list(sizes)} must be >= 0 and sum to at most {n}")
        bounds = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    elif all(isinstance(s, float) for s in sizes):
        if any(not 0.0 <= s <= 1.0 for s in sizes) or math.fsum(sizes) > 1.0 + 1e-9:
            raise ValueError(f"fractions {list(sizes)} must be in [0, 1] and sum to at most 1")
        bounds = [
            min(n, math.floor(n * math.fsum(sizes[: i + 1]) + 1e-9)) for i in range(len(sizes))
        ]
    else:
        raise TypeError(f"sizes must be all ints or all floats, got {list(sizes)}")
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # [n]
    starts = [0, *bounds[:-1]]
    return tuple(permutation[a:b] for a, b in zip(starts, bounds))
