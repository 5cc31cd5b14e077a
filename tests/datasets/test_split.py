"""The seeded random split."""

import pytest
import torch

from e3nn_pyg.datasets import QM9Pack, random_split


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    return QM9Pack(tmp_path_factory.mktemp("qm9"), source="fixture")


def test_random_split():
    train, val, test = random_split(100, [80, 10, 10], seed=3)
    again = random_split(100, [80, 10, 10], seed=3)
    other = random_split(100, [80, 10, 10], seed=4)
    assert [len(train), len(val), len(test)] == [80, 10, 10]
    assert all(torch.equal(x, y) for x, y in zip((train, val, test), again))
    assert not torch.equal(train, other[0])
    together = torch.cat([train, val, test])
    assert sorted(together.tolist()) == list(range(100))
    assert train.dtype == torch.long


def test_random_split_fractions_and_partial(fixture_dataset):
    pieces = random_split(fixture_dataset, [0.8, 0.1, 0.1], seed=0)
    assert sum(len(p) for p in pieces) == len(fixture_dataset)
    assert [len(p) for p in pieces] == [237, 30, 30]
    assert len(set(torch.cat(pieces).tolist())) == len(fixture_dataset)
    train = fixture_dataset[pieces[0]]
    assert len(train) == 237 and train[0].name == fixture_dataset[int(pieces[0][0])].name
    half = random_split(10, [0.3, 0.2], seed=0)
    assert [len(p) for p in half] == [3, 2]
    assert random_split(10, [4], seed=0)[0].tolist() == random_split(10, [4, 6], seed=0)[0].tolist()


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ([8, 3], ValueError, "sum to at most 10"),
        ([-1, 3], ValueError, "must be >= 0"),
        ([0.6, 0.6], ValueError, "sum to at most 1"),
        ([1.5], ValueError, r"in \[0, 1\]"),
        ([5, 0.5], TypeError, "all ints or all floats"),
        ([], TypeError, "non-empty sequence"),
        ("80", TypeError, "non-empty sequence"),
    ],
)
def test_random_split_rejects(sizes, error, match):
    with pytest.raises(error, match=match):
        random_split(10, sizes)


def test_random_split_rejects_dataset_and_seed():
    with pytest.raises(TypeError, match="sized dataset or an int"):
        random_split(object(), [1])
    with pytest.raises(ValueError, match="dataset size"):
        random_split(-1, [1])
    with pytest.raises(TypeError, match="seed must be an int"):
        random_split(10, [1], seed=1.0)


@pytest.mark.parametrize("seed", [-(2**63), 0, 2**64 - 1])
def test_every_seed_of_a_torch_generator_is_accepted(seed):
    assert [len(p) for p in random_split(10, [5, 5], seed=seed)] == [5, 5]


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
def test_seeds_beyond_a_torch_generator_are_refused(seed):
    with pytest.raises(ValueError, match=r"seed must lie in \[-2\*\*63, 2\*\*64\)"):
        random_split(10, [5, 5], seed=seed)
    with pytest.raises(ValueError, match=r"subset_seed must lie in"):
        QM9Pack(subset=3, subset_seed=seed, source="fixture")
    with pytest.raises(TypeError, match="subset_seed must be an int"):
        QM9Pack(subset=3, subset_seed=True, source="fixture")
