r"""The native convolution as PyTorch operators (:mod:`torch.library`).

Three operators, on explicit tensors only (the rows of an
:class:`~e3nn_pyg.tensor_product.fused.EdgePairing` and the three tensors of a
:class:`~.layout.NativeLayout`), so that :func:`torch.compile` and :func:`torch.export` keep
them in their graphs and an exported program runs them in a fresh process:

- ``e3nn_pyg::native_conv(weights, sh, x, src, dst, num_paired, num_dst, out_width, table,
  ijk, coefficients)``: the summed messages ``[num_dst, out_width]``,
  :math:`\text{out}_t = \sum_{r: t} T(w_r, Y_r, x_{s_r})` over the rows ``r`` (the first
  ``num_paired`` rows, a 0-dim tensor, also run in their reverse direction,
  ``Y(-r) = (-1)^{l} Y(r)``);
- ``e3nn_pyg::native_conv_backward(..., grad, ..., needs)``: the gradients to ``weights``,
  ``sh`` and ``x`` flagged in ``needs`` (an empty tensor for the others);
- ``e3nn_pyg::native_conv_double_backward(...)``: for cotangents of those three gradients,
  the gradients to ``weights``, ``sh``, ``x`` and ``grad`` in one pass (force training's
  second backward; see :mod:`~e3nn_pyg.tensor_product.trilinear` for the algebra).

Each has a fake kernel (shapes only) and an autograd formula made of the operators
themselves, so every order of differentiation runs on the C loops. The kernels of a
layout are built on the first call that needs them
(:mod:`~e3nn_pyg.tensor_product.native.build`,
:mod:`~e3nn_pyg.tensor_product.native.codegen`) and kept per process; ``import e3nn_pyg``
registers the operators.
"""

from __future__ import annotations

import ctypes
import threading

import torch
from torch import Tensor

from ...checks import require_index_range
from ..fused import row_groups
from .build import build_error, compile_source, generic_library
from .codegen import specialized_source
from .layout import HEADER_SIZE, NativeLayout

__all__ = ["build", "kernels", "native_conv", "native_conv_backward", "native_conv_double_backward"]

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_lock = threading.Lock()
_built: dict[int, tuple[ctypes.CDLL, NativeLayout, dict]] = {}  # layout key -> kernels


def kernels(table: Tensor, ijk: Tensor, coefficients: Tensor, dtype: torch.dtype):
    """The library, layout and coefficients (in ``dtype``) of a layout's tensors, built on
    first use (see :func:`build`)."""
    key = int(table[0])
    if key not in _built:
        build(NativeLayout.from_tensors(table, ijk, coefficients))
    library, layout, by_dtype = _built[key]
    if dtype not in by_dtype:
        by_dtype[dtype] = layout.coefficients.to(dtype)
    return library, layout, by_dtype[dtype]


def build(layout: NativeLayout) -> ctypes.CDLL:
    """The kernels of ``layout``, built on the first call: specialised to its table, else
    the generic ones (channel-wise); ``RuntimeError`` where neither builds."""
    built = _built.get(layout.key)
    if built is not None:  # every call but the first: no lock
        return built[0]
    with _lock:
        if layout.key not in _built:
            try:
                library = compile_source(specialized_source(layout), "channelwise-plan")
            except Exception as error:  # the generic loops are correct too (channel-wise)
                library = generic_library() if layout.channelwise else None
                if library is None:
                    raise RuntimeError(
                        f"the native convolution kernels cannot be built: {build_error() or error}"
                    ) from error
            _built[layout.key] = (library, layout, {})
        return _built[layout.key][0]


def _pointer(t: Tensor | None, first: int = 0) -> ctypes.c_void_p:
    """The address of row ``first`` of a contiguous matrix (0 for ``None``)."""
    if t is None:
        return ctypes.c_void_p(0)
    return ctypes.c_void_p(t.data_ptr() + first * t.stride(0) * t.element_size())


def _check_rows(src: Tensor, dst: Tensor, paired: Tensor, num_src: int, num_dst: int) -> None:
    """The rows must be in range: the C loops index raw memory. A paired row also runs from
    its target to its source."""
    if (
        src.dtype != torch.long
        or dst.dtype != torch.long
        or src.dim() != 1
        or dst.shape != src.shape
    ):
        raise ValueError(
            f"native kernels: src and dst must be int64 [rows], got {src.dtype} "
            f"{tuple(src.shape)} and {dst.dtype} {tuple(dst.shape)}"
        )
    if paired.numel() != 1 or paired.is_floating_point() or not 0 <= int(paired) <= src.shape[0]:
        raise ValueError(f"native kernels: num_paired must count rows in [0, {src.shape[0]}]")
    require_index_range(src, num_src, "native kernels: source node")
    require_index_range(dst, num_dst, "native kernels: target node")
    num_paired = int(paired)
    require_index_range(src[:num_paired], num_dst, "native kernels: target node (reverse)")
    require_index_range(dst[:num_paired], num_src, "native kernels: source node (reverse)")


def _check(layout: NativeLayout, weights: Tensor, sh: Tensor, x: Tensor, src: Tensor) -> None:
    rows = src.shape[0]
    expected = ((rows, layout.weight_width), (rows, layout.sh_width), (x.shape[0], layout.x_width))
    for name, t, shape in zip(("weights", "harmonics", "features"), (weights, sh, x), expected):
        if tuple(t.shape) != shape or t.dtype != x.dtype or t.device.type != "cpu":
            raise ValueError(
                f"native kernels: {name} are {t.dtype} {tuple(t.shape)} on {t.device}, "
                f"expected {x.dtype} {shape} on cpu"
            )
    if x.dtype not in _SUFFIX:
        raise ValueError(f"native kernels take float32 or float64, got {x.dtype}")


def _table_arguments(layout: NativeLayout, coefficients: Tensor) -> tuple:
    """The C arguments of the table of paths: paths, their count, ``ijk``, coefficients."""
    return (
        _pointer(layout.table[HEADER_SIZE:]),  # the paths, after the header
        ctypes.c_int64(len(layout.paths)),
        _pointer(layout.ijk),
        _pointer(coefficients),
    )


def _run(function, groups, arguments) -> None:
    """Call the C entry point ``function`` on every group of rows."""
    for directions, first, src, dst in groups:
        if function(*arguments(directions, first, src, dst)):
            raise MemoryError("the native convolution could not allocate its buffers")


def _row_arguments(directions, first, src, dst, weights, sh, x) -> tuple:
    return (
        ctypes.c_int64(src.shape[0]), ctypes.c_int64(directions), _pointer(src), _pointer(dst),
        _pointer(weights, first), ctypes.c_int64(weights.shape[1]),
        _pointer(sh, first), ctypes.c_int64(sh.shape[1]), _pointer(x), ctypes.c_int64(x.shape[1]),
    )  # fmt: skip


@torch.library.custom_op("e3nn_pyg::native_conv", mutates_args=(), device_types="cpu")
def native_conv(
    weights: Tensor,
    sh: Tensor,
    x: Tensor,
    src: Tensor,
    dst: Tensor,
    num_paired: Tensor,
    num_dst: int,
    out_width: int,
    table: Tensor,
    ijk: Tensor,
    coefficients: Tensor,
) -> Tensor:
    """The summed messages ``[num_dst, out_width]`` (see the module docstring)."""
    library, layout, c = kernels(table, ijk, coefficients, x.dtype)
    _check(layout, weights, sh, x, src)
    _check_rows(src, dst, num_paired, x.shape[0], num_dst)
    if out_width != layout.out_width:
        raise ValueError(
            f"native kernels: out_width {out_width}, the layout's is {layout.out_width}"
        )
    weights, sh, x = weights.contiguous(), sh.contiguous(), x.contiguous()
    out = x.new_zeros(num_dst, out_width)  # [N_t, out_width]
    _run(
        getattr(library, "cw_forward_" + _SUFFIX[x.dtype]),
        row_groups(src, dst, int(num_paired)),
        lambda directions, first, s, d: (
            *_row_arguments(directions, first, s, d, weights, sh, x),
            _pointer(out), ctypes.c_int64(out_width), ctypes.c_int64(num_dst),
            *_table_arguments(layout, c), ctypes.c_int64(layout.scratch),
            ctypes.c_int(torch.get_num_threads()),
        ),
    )  # fmt: skip
    return out


@native_conv.register_fake
def _(weights, sh, x, src, dst, num_paired, num_dst, out_width, table, ijk, coefficients):
    return x.new_empty(num_dst, out_width)


def _empty_unless(need: bool, like: Tensor) -> Tensor | None:
    return torch.zeros_like(like) if need else None


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    """An output the caller did not ask for: an empty tensor (operators return tensors)."""
    return like.new_empty(0) if t is None else t


@torch.library.custom_op("e3nn_pyg::native_conv_backward", mutates_args=(), device_types="cpu")
def native_conv_backward(
    weights: Tensor,
    sh: Tensor,
    x: Tensor,
    grad: Tensor,
    src: Tensor,
    dst: Tensor,
    num_paired: Tensor,
    needs: list[bool],
    table: Tensor,
    ijk: Tensor,
    coefficients: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients to ``(weights, sh, x)`` flagged in ``needs`` of the summed messages
    with output gradient ``grad`` (empty tensors for the others)."""
    library, layout, c = kernels(table, ijk, coefficients, x.dtype)
    _check(layout, weights, sh, x, src)
    weights, sh, x, grad = weights.contiguous(), sh.contiguous(), x.contiguous(), grad.contiguous()
    if grad.dim() != 2 or grad.shape[1] != layout.out_width or grad.dtype != x.dtype:
        raise ValueError(f"native kernels: gradient {tuple(grad.shape)} {grad.dtype}")
    _check_rows(src, dst, num_paired, x.shape[0], grad.shape[0])
    grad_w, grad_sh, grad_x = map(_empty_unless, needs, (weights, sh, x))
    _run(
        getattr(library, "cw_backward_" + _SUFFIX[x.dtype]),
        row_groups(src, dst, int(num_paired)),
        lambda directions, first, s, d: (
            *_row_arguments(directions, first, s, d, weights, sh, x),
            ctypes.c_int64(x.shape[0]), _pointer(grad), ctypes.c_int64(layout.out_width),
            *_table_arguments(layout, c),
            _pointer(grad_w, first), _pointer(grad_sh, first), _pointer(grad_x),
            ctypes.c_int64(layout.scratch), ctypes.c_int(torch.get_num_threads()),
        ),
    )  # fmt: skip
    return _or_empty(grad_w, x), _or_empty(grad_sh, x), _or_empty(grad_x, x)


@native_conv_backward.register_fake
def _(weights, sh, x, grad, src, dst, num_paired, needs, table, ijk, coefficients):
    return tuple(t.new_empty(t.shape if need else (0,)) for need, t in zip(needs, (weights, sh, x)))


@torch.library.custom_op(
    "e3nn_pyg::native_conv_double_backward", mutates_args=(), device_types="cpu"
)
def native_conv_double_backward(
    weights: Tensor,
    sh: Tensor,
    x: Tensor,
    grad: Tensor,
    cotangents: list[Tensor],
    src: Tensor,
    dst: Tensor,
    num_paired: Tensor,
    needs: list[bool],
    table: Tensor,
    ijk: Tensor,
    coefficients: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For cotangents ``(a_w, a_sh, a_x)`` of the backward's three gradients, the gradients
    to ``(weights, sh, x, grad)`` flagged in ``needs`` (empty tensors for the others)."""
    library, layout, _ = kernels(table, ijk, coefficients, x.dtype)
    function = getattr(library, "cw_double_backward_" + _SUFFIX[x.dtype], None)
    if function is None:  # generic or fully connected kernels: the composed double backward
        args = (src, dst, num_paired, table, ijk, coefficients)
        return tuple(map(_or_empty, _composed_double(weights, sh, x, grad, cotangents, needs, args),
                         (x,) * 4))  # fmt: skip
    _check(layout, weights, sh, x, src)
    _check_rows(src, dst, num_paired, x.shape[0], grad.shape[0])
    if grad.shape[1] != layout.out_width or any(
        a.shape != t.shape for a, t in zip(cotangents, (weights, sh, x))
    ):
        raise ValueError("native kernels: the gradient or cotangents do not fit the inputs")
    inputs = [t.contiguous() for t in (weights, sh, x, grad)]
    a_w, a_sh, a_x = (a.contiguous() for a in cotangents)
    w, y, xs, g = inputs
    results = list(map(_empty_unless, needs, inputs))
    grad_w, grad_sh, grad_x, grad_grad = results
    _run(
        function,
        row_groups(src, dst, int(num_paired)),
        lambda directions, first, s, d: (
            ctypes.c_int64(s.shape[0]), ctypes.c_int64(directions), _pointer(s), _pointer(d),
            _pointer(w, first), _pointer(y, first), _pointer(xs), _pointer(g),
            _pointer(a_w, first), _pointer(a_sh, first), _pointer(a_x), _pointer(grad_grad),
            _pointer(grad_w, first), _pointer(grad_sh, first), _pointer(grad_x),
            ctypes.c_int64(g.numel()), ctypes.c_int64(xs.numel()),
            ctypes.c_int(torch.get_num_threads()),
        ),
    )  # fmt: skip
    return tuple(_or_empty(t, x) for t in results)


@native_conv_double_backward.register_fake
def _(weights, sh, x, grad, cotangents, src, dst, num_paired, needs, table, ijk, coefficients):
    like = (weights, sh, x, grad)
    return tuple(t.new_empty(t.shape if need else (0,)) for need, t in zip(needs, like))


def _composed_double(weights, sh, x, grad, cotangents, needs, args) -> list[Tensor | None]:
    """The double backward as sums of forwards and backwards with one argument substituted
    (every gradient is linear in each argument), through the operators (differentiable)."""
    src, dst, num_paired, table, ijk, coefficients = args
    inputs = (weights, sh, x)
    results: list[Tensor | None] = [None] * 4
    for slot, cotangent in enumerate(cotangents):
        if cotangent is None:
            continue
        substituted = list(inputs)
        substituted[slot] = cotangent
        partial_needs = [need and other != slot for other, need in enumerate(needs[:3])]
        if any(partial_needs):
            partial = torch.ops.e3nn_pyg.native_conv_backward(
                *substituted, grad, src, dst, num_paired, partial_needs, table, ijk, coefficients
            )
            for other, value in enumerate(partial):
                if partial_needs[other]:
                    results[other] = value if results[other] is None else results[other] + value
        if needs[3]:
            value = torch.ops.e3nn_pyg.native_conv(
                *substituted, src, dst, num_paired, grad.shape[0], grad.shape[1], table, ijk,
                coefficients,
            )  # fmt: skip
            results[3] = value if results[3] is None else results[3] + value
    return [
        r if r is not None or not need else torch.zeros_like(t)
        for r, need, t in zip(results, needs, (weights, sh, x, grad))
    ]


# -- autograd: every formula is made of the operators -----------------------------------------
def _forward_context(ctx, inputs, output) -> None:
    weights, sh, x, src, dst, num_paired, _, _, table, ijk, coefficients = inputs
    ctx.save_for_backward(weights, sh, x, src, dst, num_paired, table, ijk, coefficients)


def _forward_backward(ctx, grad: Tensor):
    weights, sh, x, src, dst, num_paired, table, ijk, coefficients = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:3])
    grads = torch.ops.e3nn_pyg.native_conv_backward(
        weights, sh, x, grad, src, dst, num_paired, needs, table, ijk, coefficients
    )
    grads = [g if need else None for g, need in zip(grads, needs)]
    return (*grads, None, None, None, None, None, None, None, None)


def _backward_context(ctx, inputs, output) -> None:
    weights, sh, x, grad, src, dst, num_paired, needs, table, ijk, coefficients = inputs
    ctx.save_for_backward(weights, sh, x, grad, src, dst, num_paired, table, ijk, coefficients)
    ctx.needs = needs


def _backward_backward(ctx, *cotangents: Tensor):
    weights, sh, x, grad, src, dst, num_paired, table, ijk, coefficients = ctx.saved_tensors
    # a gradient the backward did not compute (empty) has no cotangent
    cotangents = [a if need and a is not None else None for a, need in zip(cotangents, ctx.needs)]
    needs = list(ctx.needs_input_grad[:4])
    args = (src, dst, num_paired, table, ijk, coefficients)
    if torch.is_grad_enabled() or not any(needs):  # recorded: compose differentiable ops
        results = _composed_double(weights, sh, x, grad, cotangents, needs, args)
    else:  # the one-pass kernel
        filled = [torch.zeros_like(t) if a is None else a
                  for a, t in zip(cotangents, (weights, sh, x))]  # fmt: skip
        results = torch.ops.e3nn_pyg.native_conv_double_backward(
            weights, sh, x, grad, filled, src, dst, num_paired, needs, table, ijk,
            coefficients,
        )  # fmt: skip
    results = [r if need else None for r, need in zip(results, needs)]
    return (*results, None, None, None, None, None, None, None)


torch.library.register_autograd(
    "e3nn_pyg::native_conv", _forward_backward, setup_context=_forward_context
)
torch.library.register_autograd(
    "e3nn_pyg::native_conv_backward", _backward_backward, setup_context=_backward_context
)
