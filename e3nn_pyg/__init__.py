"""e3nn_pyg: E(3)-equivariant point convolutions as a PyTorch Geometric plugin."""

__version__ = "0.1.0"
