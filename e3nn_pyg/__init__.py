"""e3nn_pyg: E(3)-equivariant point convolutions as a PyTorch Geometric plugin.

The main names are available at the top level (``e3nn_pyg.Convolution``,
``e3nn_pyg.radius_graph``, ...). They are imported on first use, so that
``import e3nn_pyg.o3`` stays free of torch_geometric.

``import e3nn_pyg`` registers the package's PyTorch operators (``torch.library``: the
radius searches and the native convolution, ``torch.ops.e3nn_pyg.*``), so that a
:func:`torch.export.load` of an exported model needs nothing else; their modules need
torch alone.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "Rs": "e3nn_pyg.o3",
    "spherical_harmonics": "e3nn_pyg.o3",
    "wigner_3j": "e3nn_pyg.o3",
    "wigner_D": "e3nn_pyg.o3",
    "rand_rotation": "e3nn_pyg.o3",
    "Kernel": "e3nn_pyg.kernel",
    "Convolution": "e3nn_pyg.conv",
    "radius_graph": "e3nn_pyg.graph",
    "periodic_radius_graph": "e3nn_pyg.graph",
    "prepare_graph": "e3nn_pyg.graph",
    "CosineBasisModel": "e3nn_pyg.radial",
    "GaussianRadialModel": "e3nn_pyg.radial",
    "BesselRadialModel": "e3nn_pyg.radial",
    "GatedBlock": "e3nn_pyg.non_linearities",
    "GatedBlockParity": "e3nn_pyg.non_linearities",
    "NormActivation": "e3nn_pyg.non_linearities",
    "EquivariantNet": "e3nn_pyg.models",
    "ManyBodyNet": "e3nn_pyg.models",
    "compile_model": "e3nn_pyg.compilation",
    "load": "e3nn_pyg.training.checkpoint",
    "equivariance_error": "e3nn_pyg.testing",
    "assert_equivariant": "e3nn_pyg.testing",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'e3nn_pyg' has no attribute {name!r}")


#: The modules that define the package's operators, imported with the package.
OPERATOR_MODULES = (
    "e3nn_pyg.graph.search",
    "e3nn_pyg.graph.periodic",
    "e3nn_pyg.tensor_product.native.ops",
)
for _module in OPERATOR_MODULES:
    import_module(_module)
