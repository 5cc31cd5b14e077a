"""Exact constants: a module converted with .double() computes what a float64 build does."""

import torch
from torch_geometric.data import Batch, Data

from e3nn_pyg.models import EquivariantNet
from e3nn_pyg.o3 import rand_rotation

SMALL = dict(hidden_Rs="8x0e + 4x1o + 2x2e", num_layers=2, cutoff=3.0, radial_hidden=16)


def molecules() -> Batch:
    generator = torch.Generator().manual_seed(0)
    data = [
        Data(
            z=torch.tensor([6, 1, 8, 1, 7, 1][:n]), pos=1.5 * torch.randn(n, 3, generator=generator)
        )
        for n in (6, 4)
    ]
    return Batch.from_data_list(data)


def build(dtype: torch.dtype) -> EquivariantNet:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        return EquivariantNet(**SMALL, derivative=True)
    finally:
        torch.set_default_dtype(previous)


def test_double_after_a_float32_build_equals_a_float64_build():
    converted = build(torch.float32).double()
    native = build(torch.float64)
    native.load_state_dict(converted.state_dict())  # the same parameter values
    for (name, a), b in zip(converted.named_buffers(), native.buffers()):
        assert torch.equal(a, b), name  # Clebsch-Gordan tables, radial centres, ...
    batch = molecules()
    pos = batch.pos.double()
    for x, y in zip(converted(batch.z, pos, batch.batch), native(batch.z, pos, batch.batch)):
        torch.testing.assert_close(x, y, atol=1e-14, rtol=1e-14)


def test_converted_model_is_equivariant_to_float64_precision():
    model = build(torch.float32).double()
    batch = molecules()
    pos = batch.pos.double()
    rotation = rand_rotation(dtype=torch.float64)
    energy, forces = model(batch.z, pos, batch.batch)
    energy_r, forces_r = model(batch.z, pos @ rotation.T, batch.batch)
    torch.testing.assert_close(energy_r, energy, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(forces_r, forces @ rotation.T, atol=1e-12, rtol=1e-12)


def test_loading_a_float32_state_keeps_exact_constants():
    native = build(torch.float64)
    native.load_state_dict(build(torch.float32).state_dict())
    reference = build(torch.float64)
    for (name, a), b in zip(native.named_buffers(), reference.buffers()):
        if name.endswith(("centers", "frequencies", "cg", "cg_both")) or ".cg_" in name:
            assert torch.equal(a, b), name
