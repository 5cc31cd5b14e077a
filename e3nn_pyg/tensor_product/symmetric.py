r"""The symmetric contraction of MACE (Batatia et al., NeurIPS 2022): the body-order
:math:`\nu + 1` features of each channel, with element-dependent weights.

For an atom :math:`n` of species :math:`s_n` and a channel :math:`k`, let
:math:`A_{nk} \in \mathbb{R}^D` be the components of all input irreps of that channel
concatenated (one copy of each irrep). The output irrep :math:`(L, P)` of channel
:math:`k` is

.. math::
    B_{nkM} = \sum_{\nu=1}^{\nu_{\max}} \sum_\eta w^{(L,\nu)}_{s_n k \eta}
        \sum_m U^{(L,\nu)}_{\eta m M} \prod_{\xi=1}^{\nu} A_{nk\, i_\xi(m)},

with the couplings :math:`U` of :func:`~e3nn_pyg.o3.coupling.symmetric_coupling` in monomial
form (:math:`m` runs over the sorted index tuples).

**How it runs** (plain torch operations: autograd gives the backward and the double
backward of force training, and :func:`torch.compile` and :func:`torch.export` see ordinary
operators). Write :math:`A' = (1, A_0, \dots, A_{D-1})`: every monomial of degree
:math:`\nu \le \nu_{\max}` is one of degree exactly :math:`\nu_{\max}` in :math:`A'`
(padded with the 1), and that one splits into an *inner* monomial of its
:math:`a = \lceil \nu_{\max}/2 \rceil` smallest indices and an *outer* one of the others,
so that (Horner-like, for :math:`\nu_{\max} = 3`: inner :math:`A'_i A'_j`, outer
:math:`A'_k`, :math:`i \le j \le k`)

.. math::
    B_{nk\cdot} = \sum_{o} \mathrm{outer}_o(A'_{nk})
        \sum_{p} W_{k\, s_n\, o\, p\, \cdot}\; \mathrm{inner}_p(A'_{nk}),
    \qquad W_{k s o p M} = \sum_\eta w_{s k \eta} U_{\eta (p, o) M}.

1. the inner monomials (``[C, n_inner, N]``, 153 for :math:`D = 16`, :math:`a = 2`),
   built degree by degree in colexicographic order (two ``index_select`` and a product
   each);
2. the weights of every species contracted with the couplings, :math:`W` (independent of
   the number of atoms);
3. per run of outer monomials one batched matrix product per channel,
   :math:`W` ``[run (S (2L+1)), prefix]`` times the inner monomials ``[prefix, N]``, then
   the outer monomials multiply and sum. An outer monomial :math:`o` only meets inner ones
   with indices :math:`\le \min o`, a leading block (prefix) of the colexicographic order:
   the outer monomials are cut into a few runs that share a prefix (chosen by dynamic
   programming), which skips most of the zeros of :math:`W`;
4. every species is computed for every atom (no data-dependent shapes), and each atom
   keeps its own (a ``gather``).

That is :math:`K = S \sum (2L+1)` products per channel and atom. With many species
(:math:`K > E = \sum n_\eta (2L+1)`, e.g. one weight row per element of the periodic
table) the module runs in *shared mode* instead: step 3 multiplies the couplings alone
(shared by all channels and species, :math:`E` products), and the weights of each atom's
species multiply and sum afterwards. The mode is chosen at construction, for the fewer
products.

Steps 1 and 3 run on 8 channels at a time, so that their intermediates stay in the cache
(on one CPU thread this made the force-training step 1.1 to 1.7 times faster than all
channels at once).

Per channel and atom this is about :math:`S\,(2L+1)\,1300` multiply-adds for
:math:`D = 16`, :math:`\nu_{\max} = 3`, with small intermediates (the inner monomials and
``[C, run, S (2L+1), N]``); the :math:`D^\nu` tensors of the plain contraction never
appear. (Alternatives timed while writing it, one thread: all monomials of degree
:math:`\nu` times the per-species couplings was 5-10x slower in the force-training step;
contracting the monomials with the couplings before the weights costs :math:`n_\eta / S`
times more products.)

:func:`symmetric_contraction_reference` computes the same with the full symmetric tensors
and one ``einsum`` per order (the tests' oracle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..checks import require_features, require_index_range, require_int, require_like
from ..constants import ExactConstants
from ..o3 import Irrep, Rs, RsLike
from ..o3.coupling import expand_monomials, monomial_table, symmetric_coupling

__all__ = ["SymmetricContraction", "symmetric_contraction_reference"]

# channels per step of the contraction: the intermediates of a step stay small enough for
# the cache (timed at 1 thread, C = 32 and 128, float32 and float64: 8 was fastest)
_CHANNEL_CHUNK = 8


def _weight_name(irrep: Irrep, nu: int) -> str:
    """The key of the weights of output irrep ``irrep`` at order ``nu``."""
    return f"{irrep}_nu{nu}"


def _channels(rs: Rs, what: str) -> int:
    """The common multiplicity of the blocks of ``rs``, which must be distinct irreps."""
    if len(rs) == 0:
        raise ValueError(f"{what} must not be empty")
    muls = {block.mul for block in rs}
    if len(muls) != 1 or 0 in muls:
        raise ValueError(
            f"{what} must hold every irrep with the same positive multiplicity (the number of "
            f"channels), got {rs}"
        )
    irreps = [block.ir for block in rs]
    if len(set(irreps)) != len(irreps):
        raise ValueError(f"{what} must hold each irrep once, got {rs}")
    return muls.pop()


def _check_layout(Rs_in: Rs, Rs_out: Rs, correlation: int, num_species: int) -> None:
    channels_in = _channels(Rs_in, "Rs_in")
    channels_out = _channels(Rs_out, "Rs_out")
    if channels_in != channels_out:
        raise ValueError(
            f"Rs_in and Rs_out must have the same number of channels, got {channels_in} "
            f"({Rs_in}) and {channels_out} ({Rs_out})"
        )
    require_int(correlation, "correlation", minimum=1)
    require_int(num_species, "num_species", minimum=1)
    with_parity = {block.p != 0 for block in (*Rs_in, *Rs_out)}
    if len(with_parity) > 1:
        raise ValueError(
            f"Rs_in and Rs_out must all have a parity or all have none, got {Rs_in} -> {Rs_out}"
        )


def _couplings(Rs_in: Rs, Rs_out: Rs, correlation: int) -> dict[tuple[int, int], Tensor]:
    """The couplings ``[n_eta, n_mono, 2L+1]`` of every (output block, order) that has some;
    raises if an output irrep has none at any order."""
    irreps = [block.ir for block in Rs_in]
    found = {}
    for index, block in enumerate(Rs_out):
        for nu in range(1, correlation + 1):
            coupling = symmetric_coupling(irreps, nu, block.ir)
            if coupling.num_couplings:
                found[index, nu] = coupling.coefficients
        if not any((index, nu) in found for nu in range(1, correlation + 1)):
            raise ValueError(
                f"output irrep {block.ir} cannot be reached from {Rs_in} with correlation "
                f"<= {correlation}: no symmetric coupling exists"
            )
    return found


def _split(monomial: tuple[int, ...], top: int, inner: int) -> tuple[tuple, tuple]:
    """A monomial of the components (sorted indices) as rows of ``A' = [1, A]``, padded with
    the 1 (row 0) to degree ``top`` and cut into its ``inner`` smallest and the others."""
    padded = (0,) * (top - len(monomial)) + tuple(i + 1 for i in monomial)
    return padded[:inner], padded[inner:]


def _groups(needs: list[int]) -> list[tuple[int, int]]:
    """Cut the outer monomials (sorted by the inner prefix each needs) into runs ``[start,
    stop)`` that share the prefix of their last one: the fewest multiply-adds, counting one
    full row more per run for its overhead (dynamic programming)."""
    count, overhead = len(needs), needs[-1]
    best, cut = [0] + [None] * count, [0] * (count + 1)
    for stop in range(1, count + 1):
        for start in range(stop):
            cost = best[start] + (stop - start) * needs[stop - 1] + overhead
            if best[stop] is None or cost < best[stop]:
                best[stop], cut[stop] = cost, start
    runs, stop = [], count
    while stop:
        runs.append((cut[stop], stop))
        stop = cut[stop]
    return runs[::-1]


def _index_steps(dim: int, degree: int) -> list[tuple[Tensor, Tensor]]:
    """How the monomials of degree 2..``degree`` of ``dim`` rows follow from those one
    degree lower (colexicographic order): the row of the prefix and the last row."""
    steps = []
    for k in range(2, degree + 1):
        previous = {tuple(row): i for i, row in enumerate(monomial_table(dim, k - 1).tolist())}
        table = monomial_table(dim, k)  # [n_mono, k]
        prefix = torch.tensor([previous[tuple(row[:-1])] for row in table.tolist()])
        steps.append((prefix, table[:, -1].clone()))
    return steps


class SymmetricContraction(ExactConstants, nn.Module):
    r"""The symmetric contraction of MACE, per channel and with weights per species
    (module docstring for the algorithm):

    .. math::
        B_{nkM} = \sum_{\nu=1}^{\nu_{\max}} \sum_\eta w^{(L,\nu)}_{s_n k \eta}
            \sum_{i_1 \le \dots \le i_\nu} U^{(L,\nu)}_{\eta\, i_1 \dots i_\nu M}
            A_{nk i_1} \cdots A_{nk i_\nu}.

    The weights of output irrep :math:`(L, P)` and order :math:`\nu` are the parameter
    ``weights["<L><p>_nu<nu>"]`` of shape ``[num_species, C, n_eta]`` (absent where no
    coupling exists). Their initialization (:meth:`reset_parameters`) is
    :math:`\mathcal{N}(0, \sigma^2)` with
    :math:`\sigma^2 = (2L+1) / (\nu_{\max}\, n_\eta\, \nu!)`: each coupling has unit
    Frobenius norm, so for inputs of unit variance every order contributes a variance of
    about :math:`1/\nu_{\max}` per component and the output is of order one (for
    Gaussian inputs ``16x0e+16x1o+16x2e+16x3o`` and correlation 3, a mean square of 2.4
    for ``0e``, 1.6 for ``0e+1o``: the invariants such as :math:`|A|^2` have a mean).

    Args:
        Rs_in (RsLike): the input, ``C`` copies of each of distinct irreps
            (``"16x0e+16x1o+16x2e+16x3o"``).
        Rs_out (RsLike): the output, ``C`` copies of each of distinct irreps, each reachable
            from ``Rs_in`` at some order (``"16x0e+16x1o"``).
        correlation (int): the highest order :math:`\nu_{\max} \ge 1` (body order
            :math:`\nu_{\max} + 1`).
        num_species (int): the number of species (element-dependent weights).

    Shapes:
        - **input:** features ``x`` :math:`[N, \dim(Rs_{in})]` (the Rs layout: per block
          ``[C, 2l+1]``), species ``species`` :math:`[N]` long in ``[0, num_species)``
        - **output:** :math:`[N, \dim(Rs_{out})]`

    Example:
        >>> module = SymmetricContraction("4x0e+4x1o", "4x0e", correlation=3, num_species=2)
        >>> module(torch.randn(5, 16), torch.tensor([0, 1, 1, 0, 1])).shape
        torch.Size([5, 4])
    """

    def __init__(self, Rs_in: RsLike, Rs_out: RsLike, correlation: int, num_species: int):
        super().__init__()
        self.Rs_in, self.Rs_out = Rs(Rs_in), Rs(Rs_out)
        _check_layout(self.Rs_in, self.Rs_out, correlation, num_species)
        self.correlation, self.num_species = correlation, num_species
        self.channels = self.Rs_in[0].mul
        self.dim = sum(2 * block.l + 1 for block in self.Rs_in)
        self._widths = [2 * block.l + 1 for block in self.Rs_out]
        couplings = _couplings(self.Rs_in, self.Rs_out, correlation)
        self.weights = nn.ParameterDict()
        self._keys: list[list[str]] = [[] for _ in self.Rs_out]  # weight names per output
        self._scales: dict[str, float] = {}
        for (index, nu), coupling in couplings.items():
            name = _weight_name(self.Rs_out[index].ir, nu)
            n_eta = coupling.shape[0]
            self._keys[index].append(name)
            self.weights[name] = nn.Parameter(torch.empty(num_species, self.channels, n_eta))
            variance = self._widths[index] / (correlation * n_eta * math.factorial(nu))
            self._scales[name] = math.sqrt(variance)
        # per-species mode: K = S sum(2L+1) products per channel and atom, every species at
        # once; shared mode (many species): the couplings alone, E = sum(n_eta (2L+1)), then
        # the weights of each atom's species. Whichever has fewer.
        per_species = num_species * sum(self._widths)
        shared = sum(c.shape[0] * c.shape[2] for c in couplings.values())
        self._shared = shared < per_species
        self._width = shared if self._shared else per_species
        self._register_plan(couplings)
        self.reset_parameters()

    def _register_plan(self, couplings: dict[tuple[int, int], Tensor]) -> None:
        """The Horner-like plan (module docstring): the inner monomials, the runs of outer
        monomials with the inner prefix each run needs, and per (output, run) the couplings
        as ``[n_eta, run length, prefix, 2L+1]`` constants."""
        top = max(nu for _, nu in couplings)
        self._inner_degree = top - top // 2
        inner_rows = {
            tuple(row): i
            for i, row in enumerate(monomial_table(self.dim + 1, self._inner_degree).tolist())
        }
        needs: dict[tuple, int] = {}  # outer monomial -> inner prefix it needs
        for nu in sorted({nu for _, nu in couplings}):
            for monomial in monomial_table(self.dim, nu).tolist():
                inner, outer = _split(tuple(monomial), top, self._inner_degree)
                needs[outer] = max(needs.get(outer, 0), inner_rows[inner] + 1)
        outers = sorted(needs, key=lambda outer: (needs[outer], outer[::-1]))
        self._runs = _groups([needs[outer] for outer in outers])
        self._prefixes = [needs[outers[stop - 1]] for _, stop in self._runs]
        for step, (prefix, last) in enumerate(_index_steps(self.dim + 1, self._inner_degree)):
            self.register_buffer(f"inner_prefix_{step}", prefix, persistent=False)
            self.register_buffer(f"inner_last_{step}", last, persistent=False)
        for run, (start, stop) in enumerate(self._runs):
            table = torch.tensor(outers[start:stop], dtype=torch.long).reshape(stop - start, -1)
            self.register_buffer(f"outer_{run}", table.T.contiguous(), persistent=False)
            position = {outer: i for i, outer in enumerate(outers[start:stop])}
            for index in range(len(self.Rs_out)):
                blocks = [
                    self._place(couplings[index, nu], nu, top, inner_rows, position, run)
                    for nu in range(1, top + 1)
                    if (index, nu) in couplings
                ]
                self.register_constant(f"coupling_{index}_{run}", torch.cat(blocks))

    def _place(
        self,
        coupling: Tensor,
        nu: int,
        top: int,
        inner_rows: dict[tuple, int],
        position: dict[tuple, int],
        run: int,
    ) -> Tensor:
        """The couplings of order ``nu`` on the monomials of run ``run``:
        ``[n_eta, run length, prefix, 2L+1]`` float64."""
        n_eta, _, width = coupling.shape
        placed = coupling.new_zeros(n_eta, len(position), self._prefixes[run], width)
        for m, monomial in enumerate(monomial_table(self.dim, nu).tolist()):
            inner, outer = _split(tuple(monomial), top, self._inner_degree)
            if outer in position:
                placed[:, position[outer], inner_rows[inner]] = coupling[:, m]
        return placed

    def reset_parameters(self) -> None:
        r"""Weights :math:`\mathcal{N}(0, (2L+1) / (\nu_{\max} n_\eta \nu!))` (class
        docstring)."""
        for name, weight in self.weights.items():
            nn.init.normal_(weight, std=self._scales[name])

    def forward(self, x: Tensor, species: Tensor) -> Tensor:
        """``x`` ``[N, dim(Rs_in)]``, ``species`` ``[N]`` long: ``[N, dim(Rs_out)]``."""
        require_features(x, self.Rs_in, "SymmetricContraction input")
        weight = next(iter(self.weights.values()))
        require_like(x, weight, "SymmetricContraction input", "its weights")
        if not isinstance(species, Tensor) or species.dtype != torch.long or species.dim() != 1:
            what = (
                f"{species.dtype} tensor of shape {list(species.shape)}"
                if isinstance(species, Tensor)
                else type(species).__name__
            )
            raise TypeError(f"species must be a 1-D torch.long tensor, got {what}")
        if species.shape[0] != x.shape[0]:
            raise ValueError(f"species has {species.shape[0]} entries for {x.shape[0]} atoms")
        require_index_range(species, self.num_species, "species")
        return self._contract(x, species)

    def _run_matrix(self, run: int) -> Tensor:
        """The left factor of the matrix product of run ``run``: the couplings contracted
        with the weights of every species, ``[C, G S sum(2L+1), prefix]``, or (shared mode)
        the couplings alone, ``[G E, prefix]`` with ``E = sum(n_eta (2L+1))``."""
        blocks = []
        for index, keys in enumerate(self._keys):
            coupling = getattr(self, f"coupling_{index}_{run}")  # [n_eta, G, P, 2L+1]
            if self._shared:
                blocks.append(coupling.permute(1, 0, 3, 2).flatten(1, 2))  # [G, n_eta M, P]
            else:
                weight = torch.cat([self.weights[name] for name in keys], dim=-1)  # [S, C, eta]
                blocks.append(torch.einsum("ske,egpM->kgsMp", weight, coupling))  # [C,G,S,M,P]
        if self._shared:
            stacked = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]  # [G, E, P]
            return stacked.reshape(-1, stacked.shape[-1])
        stacked = torch.cat(blocks, dim=3) if len(blocks) > 1 else blocks[0]
        return stacked.reshape(stacked.shape[0], -1, stacked.shape[-1])

    def _contract(self, x: Tensor, species: Tensor) -> Tensor:
        N, C = x.shape[0], self.channels
        features = torch.cat(self.Rs_in.chunks(x), dim=-1)  # [N, C, D]
        rows = torch.cat([features.new_ones(N, C, 1), features], dim=-1)  # [N, C, D+1]: A'
        rows = rows.permute(1, 2, 0).contiguous()  # [C, D+1, N]
        matrices = [self._run_matrix(run) for run in range(len(self._runs))]
        total = torch.cat(
            [
                self._contract_channels(rows[start : start + _CHANNEL_CHUNK], matrices, start)
                for start in range(0, C, _CHANNEL_CHUNK)
            ]
        )  # [C, K, N]
        if self._shared:
            return self._weigh(total, species)
        M = sum(self._widths)
        index = species.view(1, 1, 1, N).expand(C, 1, M, N)
        out = total.view(C, self.num_species, M, N).gather(1, index)  # [C, 1, M, N]
        blocks = out.squeeze(1).permute(2, 0, 1).split(self._widths, dim=-1)  # [N, C, 2L+1]
        return torch.cat([block.reshape(N, C * block.shape[-1]) for block in blocks], dim=-1)

    def _weigh(self, total: Tensor, species: Tensor) -> Tensor:
        """Shared mode: the couplings ``total`` ``[C, E, N]`` times the weights of each
        atom's species, summed over the couplings: ``[N, dim(Rs_out)]``."""
        C, N = total.shape[0], total.shape[2]
        out, offset = [], 0
        for index, keys in enumerate(self._keys):
            weight = torch.cat([self.weights[name] for name in keys], dim=-1)  # [S, C, n_eta]
            n_eta, width = weight.shape[-1], self._widths[index]
            coupled = total[:, offset : offset + n_eta * width].view(C, n_eta, width, N)
            offset += n_eta * width
            atoms = weight.index_select(0, species).permute(1, 2, 0)  # [C, n_eta, N]
            block = (coupled * atoms.unsqueeze(2)).sum(dim=1)  # [C, 2L+1, N]
            out.append(block.permute(2, 0, 1).reshape(N, C * width))
        return torch.cat(out, dim=-1)

    def _contract_channels(self, rows: Tensor, matrices: list[Tensor], start: int) -> Tensor:
        """The runs for the channels ``start ..`` of ``rows`` ``[c, D+1, N]``: ``[c, K, N]``
        (``K = S sum(2L+1)``, or ``E`` in shared mode)."""
        c, N = rows.shape[0], rows.shape[2]
        inner = rows
        for step in range(self._inner_degree - 1):
            prefix = getattr(self, f"inner_prefix_{step}")  # [n_mono]
            last = getattr(self, f"inner_last_{step}")  # [n_mono]
            inner = inner.index_select(1, prefix) * rows.index_select(1, last)  # [c, n_mono, N]
        parts = []
        for run, prefix in enumerate(self._prefixes):
            table = getattr(self, f"outer_{run}")  # [outer degree, G]
            # (no slice where the whole is used: its backward would copy into zeros)
            used = inner if prefix == inner.shape[1] else inner[:, :prefix]  # [c, prefix, N]
            matrix = matrices[run] if self._shared else matrices[run][start : start + c]
            products = torch.matmul(matrix, used).view(c, table.shape[1], self._width, N)
            factors = [rows.index_select(1, column) for column in table]  # [c, G, N] each
            if factors:
                outer = factors[0]
                for factor in factors[1:]:
                    outer = outer * factor
                products = products * outer.unsqueeze(2)  # [c, G, K, N]
            parts.append(products.sum(dim=1))  # [c, K, N]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.Rs_in}' -> '{self.Rs_out}', correlation="
            f"{self.correlation}, num_species={self.num_species})"
        )


def symmetric_contraction_reference(
    x: Tensor,
    species: Tensor,
    Rs_in: RsLike,
    Rs_out: RsLike,
    correlation: int,
    weights: Mapping[str, Tensor],
) -> Tensor:
    r"""The symmetric contraction computed plainly: for each output irrep and order the full
    symmetric coupling tensors :math:`U_{\eta i_1 \dots i_\nu M}` (no monomials) contracted
    with :math:`\nu` copies of the features in one ``einsum``.

    Args:
        x (Tensor): ``[N, dim(Rs_in)]`` features.
        species (Tensor): ``[N]`` long.
        Rs_in, Rs_out, correlation: as for :class:`SymmetricContraction`.
        weights (mapping): the weights ``[num_species, C, n_eta]`` by the names of
            ``SymmetricContraction.weights``.

    Returns:
        Tensor ``[N, dim(Rs_out)]``.
    """
    Rs_in, Rs_out = Rs(Rs_in), Rs(Rs_out)
    A = torch.cat(Rs_in.chunks(x), dim=-1)  # [N, C, D]
    letters = "abcdfghijlopqrstuvwxyz"  # einsum letters of the input slots (not e, k, n, M)
    out = []
    for block in Rs_out:
        total = x.new_zeros(x.shape[0], block.mul, 2 * block.l + 1)  # [N, C, 2L+1]
        for nu in range(1, correlation + 1):
            coupling = symmetric_coupling([b.ir for b in Rs_in], nu, block.ir)
            if coupling.num_couplings == 0:
                continue
            full = expand_monomials(coupling.coefficients, coupling.monomials, A.shape[-1])
            w = weights[_weight_name(block.ir, nu)][species]  # [N, C, n_eta]
            index = letters[:nu]
            inputs = ",".join(f"nk{i}" for i in index)
            formula = f"e{index}M,{inputs},nke->nkM"
            total = total + torch.einsum(formula, full.to(x), *([A] * nu), w)
        out.append(total.reshape(x.shape[0], -1))
    return torch.cat(out, dim=-1)
