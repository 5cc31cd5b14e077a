r"""Code generation: C row loops specialised to one :class:`~.layout.NativeLayout`.

The generic loops of ``channelwise.c`` read the table of paths entry by entry. A source
generated here has the table's constants, offsets and loop bounds compiled in (no table
reads, loops of known length, the Clebsch-Gordan coefficients as literals), at the price of
one compilation per new table (cached on disk,
:mod:`~e3nn_pyg.tensor_product.native.build`). It defines the row loops and includes
``channelwise.c`` for the drivers (threads, private sums, fixed-order reduction):

- ``forward_rows``: ``out[t, o, k, v] += w[v] * sum c Y_j x[s, i, v]`` (or, for a full
  kernel, ``sum_v w[v, u] z_k[v]``) over the rows' directions;
- ``backward_rows``: the three gradients in one pass, in two versions (with and without
  the gradient of the harmonics, decided per call);
- ``double_rows`` (channel-wise tables): the double backward in one pass.
"""

from __future__ import annotations

from .build import GENERIC_SOURCE
from .layout import NativeLayout, NativePath

__all__ = ["specialized_source"]


def _literal(value: float) -> str:
    return f"({value!r})"


def _y_vector(x_off: int, j: int) -> str:
    """The vector (over the channels of the input block at ``x_off``) that sums dL/dY_j."""
    return f"ya{x_off}_{j}"


def _y_vectors(t: str, sums: dict[tuple[int, int], int]) -> tuple[list[str], list[str]]:
    """Declaring and zeroing the vectors ``sums`` ((block offset, j) -> channels), and adding
    each one's total to ``gyr[j]``: the gradient of Y reduced once per row."""
    start = [f"{t} {_y_vector(*key)}[{v}];" for key, v in sums.items()]
    start += [f"for (int64_t v = 0; v < {v}; ++v) {_y_vector(*key)}[v] = 0;"
              for key, v in sums.items()]  # fmt: skip
    finish = [
        f'{{ {t} total = 0; _Pragma("omp simd reduction(+ : total)") '
        f"for (int64_t v = 0; v < {v}; ++v) total += {_y_vector(*key)}[v]; "
        f"gyr[{key[1]}] += total; }}"
        for key, v in sums.items()
    ]
    return start, finish


def _rows_source(layout: NativeLayout, c_type: str, suffix: str) -> str:
    """The row loops of ``channelwise.c`` with this table's constants baked in."""
    n_w, n_y = layout.weight_width, layout.sh_width
    x_width, out_width = layout.x_width, layout.out_width
    paths = layout.paths
    ijk, coefficients = layout.ijk.tolist(), layout.coefficients.tolist()
    t = c_type
    head, table, unused, row_start, direction_start = _row_preamble(layout, t)
    forward = [f"static void forward_rows_{suffix}({head}, {t} *out, int64_t out_stride, "
               f"{table}, {t} *scratch) {{", unused + " (void)out_stride;", *row_start,
               *direction_start, f"{t} *ot = out + e * {out_width};"]  # fmt: skip
    # the backward in two versions, with and without the gradient of Y (decided per call);
    # a channel-wise path adds its gradient of Y_j into a vector over the channels of its
    # input block, ya<block>_<j>, reduced once per row (not once per path and direction)
    sums: dict[tuple[int, int], int] = {}  # (input block offset, j) -> channels
    path_code: dict[bool, list[str]] = {False: [], True: []}
    for path in paths:
        start, stop = path.entry_start, path.entry_stop
        entries = [(n - start, *ijk[n], coefficients[n]) for n in range(start, stop)]
        generate = _channelwise_path if path.mixed == 0 else _full_path
        for with_y in (False, True):
            path_forward, path_backward = generate(t, path, entries, with_y)
            path_code[with_y] += path_backward
        forward += path_forward
        sums.update({(path.x_offset, e[2]): path.channels for e in entries})
    y_start, y_finish = _y_vectors(t, sums)
    arguments = (f"{head}, const {t} *g, int64_t g_stride, {table}, {t} *grad_w, "
                 f"{t} *grad_y, {t} *grad_x, {t} *scratch")  # fmt: skip
    backward = []
    for with_y in (False, True):
        name = f"backward_rows_{'y' if with_y else 'no_y'}_{suffix}"
        backward += [f"static void {name}({arguments}) {{", unused + " (void)g_stride;",
                     *row_start, f"{t} *gwr = grad_w ? grad_w + r * {n_w} : 0;",
                     f"{t} *gyr = grad_y + r * {n_y};" if with_y else "(void)grad_y;"]  # fmt: skip
        backward += y_start if with_y else []
        backward += [*direction_start, f"const {t} *gt = g + e * {out_width};",
                     f"{t} *gxs = grad_x ? grad_x + s * {x_width} : 0;", *path_code[with_y],
                     "}"]  # fmt: skip
        backward += y_finish if with_y else []
        backward += ["}", "}"]
    call = ("r0, r1, directions, src, dst, w, w_stride, y, y_stride, x, x_stride, g, g_stride, "
            "paths, n_paths, nnz_ijk, nnz_c, grad_w, grad_y, grad_x, scratch")  # fmt: skip
    backward += [
        f"static void backward_rows_{suffix}({arguments}) {{",
        f"if (grad_y) backward_rows_y_{suffix}({call});",
        f"else backward_rows_no_y_{suffix}({call});",
        "}",
    ]
    forward += ["}", "}", "}"]
    return "\n".join(forward + backward)


def _row_preamble(layout: NativeLayout, t: str) -> tuple[str, str, str, list[str], list[str]]:
    """The row loops' shared code: the arguments, the table's arguments, the casts of
    unused arguments, and the starts of the loops over rows and directions."""
    n_w, n_y = layout.weight_width, layout.sh_width
    x_width = layout.x_width
    head = (
        f"int64_t r0, int64_t r1, int64_t directions, const int64_t *src, const int64_t *dst, "
        f"const {t} *w, int64_t w_stride, const {t} *y, int64_t y_stride, const {t} *x, "
        f"int64_t x_stride"
    )
    table = f"const int64_t *paths, int64_t n_paths, const int32_t *nnz_ijk, const {t} *nnz_c"
    unused = (
        "(void)w_stride; (void)y_stride; (void)x_stride; (void)paths; (void)n_paths; "
        "(void)nnz_ijk; (void)nnz_c; (void)scratch;"
    )
    row_start = [
        "for (int64_t r = r0; r < r1; ++r) {",
        f"const {t} *wr = w + r * {n_w}; const {t} *yr = y + r * {n_y};",
        *[f"const {t} y{j} = yr[{j}];" for j in range(n_y)],
    ]
    direction_start = [
        "for (int64_t d = 0; d < directions; ++d) {",
        f"const {t} sgn = d ? ({t})-1 : ({t})1;",
        "const int64_t s = src[r * directions + d], e = dst[r * directions + d];",
        f"const {t} *xs = x + s * {x_width};",
    ]
    return head, table, unused, row_start, direction_start


class _Path:
    """One row of the table of paths, with the expressions its generated code shares."""

    def __init__(self, c_type: str, path: NativePath, entries: list[tuple]) -> None:
        t = c_type
        (self.v, self.x_off, self.o_off, self.o_stride, self.w_off, odd, _, _, self.di,
         self.do, self.u) = path  # fmt: skip
        self.entries = entries  # (m, i, j, k, c)
        self.sign = "sgn * " if odd else ""
        self.q = [
            f"const {t} q{m} = {self.sign}({t}){_literal(c)} * y{j};" for m, i, j, k, c in entries
        ]  # the coefficients times Y_j(+-r) of this row and direction
        self.by_k = {k: [e for e in entries if e[3] == k] for k in range(self.do)}
        self.by_i = {i: [e for e in entries if e[1] == i] for i in range(self.di)}
        self.by_j = {j: [e for e in entries if e[2] == j] for j in sorted({e[2] for e in entries})}
        self.x = [f"const {t} x{i} = xs[{self.x_off + i * self.v} + v];" for i in range(self.di)]

    def z(self, k: int) -> str:
        """The unweighted coupled feature of output component k: sum of q x."""
        return " + ".join(f"q{m} * x{i}" for m, i, _, _, _ in self.by_k[k])

    def y_terms(self, j: int, t: str, factor: str, index: str = "") -> str:
        """sum over the entries of Y_j of sign c x_i <factor>_k (for the gradient of Y_j)."""
        return " + ".join(
            f"{self.sign}({t}){_literal(c)} * x{i} * {factor}{k}{index}"
            for _, i, _, k, c in self.by_j[j]
        )


def _channelwise_path(
    t: str, path: NativePath, entries: list[tuple], with_y: bool
) -> tuple[list, list]:
    """out[k, v] += w[v] z_k[v] and its three gradients, vectorised over the channels v."""
    p = _Path(t, path, entries)
    gs = [f"const {t} g{k} = gt[{p.o_off + k * p.o_stride} + v];" for k in range(p.do)]
    w_load = f"const {t} wv = wr[{p.w_off} + v];"
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    forward = ["{", *p.q, simd, *p.x, w_load]
    forward += [
        f"ot[{p.o_off + k * p.o_stride} + v] += wv * ({p.z(k)});" for k in p.by_k if p.by_k[k]
    ]
    forward += ["}", "}"]
    backward = ["{", *p.q, "if (gxs) {", simd, *gs, w_load]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"q{m} * g{k}" for m, _, _, k, _ in terms)
            backward.append(f"gxs[{p.x_off + i * p.v} + v] += wv * ({total});")
    backward += ["}", "}", "if (gwr) {", simd, *p.x, *gs]
    total = " + ".join(f"g{k} * ({p.z(k)})" for k in p.by_k if p.by_k[k])
    backward += [f"gwr[{p.w_off} + v] += {total};", "}", "}"]
    if with_y:  # into the block's vectors
        backward += [simd, *p.x, *gs, w_load]
        backward += [
            f"{_y_vector(p.x_off, j)}[v] += wv * ({p.y_terms(j, t, 'g')});" for j in p.by_j
        ]
        backward.append("}")
    backward.append("}")
    return forward, backward


def _full_path(t: str, path: NativePath, entries: list[tuple], with_y: bool) -> tuple[list, list]:
    """out[k, u] += sum_v w[v, u] z_k[v] and its three gradients, vectorised over u."""
    p = _Path(t, path, entries)
    ks = [k for k in p.by_k if p.by_k[k]]
    u_loop = f"for (int64_t u = 0; u < {p.u}; ++u) {{"
    forward = ["{", *p.q, *[f"{t} a{k}[{p.u}] = {{0}};" for k in ks]]
    forward += [f"for (int64_t v = 0; v < {p.v}; ++v) {{", *p.x]
    forward += [f"const {t} z{k} = {p.z(k)};" for k in ks]
    forward += [f"const {t} *wv = wr + {p.w_off} + v * {p.u};", '_Pragma("omp simd") ' + u_loop]
    forward += [f"a{k}[u] += z{k} * wv[u];" for k in ks]
    forward += ["}", "}", '_Pragma("omp simd") ' + u_loop]
    forward += [f"ot[{p.o_off + k * p.u} + u] += a{k}[u];" for k in ks]
    forward += ["}", "}"]
    # backward: W^T g through a transposed copy of the row's weights in the scratch buffer,
    # so that every loop is a vectorised update (no reduction per channel)
    backward = ["{", *p.q, *[f"const {t} *gk{k} = gt + {p.o_off + k * p.u};" for k in ks]]
    backward += [
        f"for (int64_t v = 0; v < {p.v}; ++v) {{",
        f"const {t} *wv = wr + {p.w_off} + v * {p.u};",
        f"for (int64_t u = 0; u < {p.u}; ++u) scratch[u * {p.v} + v] = wv[u];",
        "}",
    ]
    backward += [f"{t} gz{k}[{p.v}] = {{0}};" for k in ks]
    backward += [u_loop, f"const {t} *wt = scratch + u * {p.v};"]
    backward += [f"const {t} gu{k} = gk{k}[u];" for k in ks]
    backward += [f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{']
    backward += [f"gz{k}[v] += wt[v] * gu{k};" for k in ks]
    backward += ["}", "}"]
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    backward += ["if (gxs) {", simd]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"q{m} * gz{k}[v]" for m, _, _, k, _ in terms)
            backward.append(f"gxs[{p.x_off + i * p.v} + v] += {total};")
    backward += ["}", "}"]
    if with_y:  # into the block's vectors, reduced once per row
        backward += [simd, *p.x]
        backward += [
            f"{_y_vector(p.x_off, j)}[v] += {p.y_terms(j, t, 'gz', '[v]')};" for j in p.by_j
        ]
        backward.append("}")
    backward += ["if (gwr) {", f"for (int64_t v = 0; v < {p.v}; ++v) {{", *p.x]
    backward += [f"const {t} z{k} = {p.z(k)};" for k in ks]
    backward += [f"{t} *gwv = gwr + {p.w_off} + v * {p.u};", '_Pragma("omp simd") ' + u_loop]
    backward += ["gwv[u] += " + " + ".join(f"z{k} * gk{k}[u]" for k in ks) + ";"]
    backward += ["}", "}", "}", "}"]
    return forward, backward


def _double_source(layout: NativeLayout, c_type: str, suffix: str) -> str:
    """The double backward's row loop of a channel-wise table (see the C file)."""
    t = c_type
    n_w, n_y = layout.weight_width, layout.sh_width
    x_width, out_width = layout.x_width, layout.out_width
    ijk, coefficients = layout.ijk.tolist(), layout.coefficients.tolist()
    code = [
        f"static void double_rows_{suffix}(int64_t r0, int64_t r1, int64_t directions, "
        f"const int64_t *src, const int64_t *dst, const {t} *w, const {t} *y, const {t} *x, "
        f"const {t} *g, const {t} *aw, const {t} *ay, const {t} *ax, {t} *grad_g, "
        f"{t} *grad_w, {t} *grad_y, {t} *grad_x) {{",
        "for (int64_t r = r0; r < r1; ++r) {",
        f"const {t} *wr = w + r * {n_w}, *awr = aw + r * {n_w};",
        f"const {t} *yr = y + r * {n_y}, *ayr = ay + r * {n_y};",
        *[f"const {t} y{j} = yr[{j}], ay{j} = ayr[{j}];" for j in range(n_y)],
        f"{t} *gwr = grad_w ? grad_w + r * {n_w} : 0;",
        f"{t} *gyr = grad_y ? grad_y + r * {n_y} : 0;",
    ]
    sums: dict[tuple[int, int], int] = {}  # (input block offset, j) -> channels
    paths = []
    for path in layout.paths:
        start, stop = path.entry_start, path.entry_stop
        entries = [(n - start, *ijk[n], coefficients[n]) for n in range(start, stop)]
        paths.append(_Path(t, path, entries))
        sums.update({(path.x_offset, e[2]): path.channels for e in entries})
    y_start, y_finish = _y_vectors(t, sums)
    code += [*y_start[: len(sums)], "if (gyr) {", *y_start[len(sums) :], "}"]
    code += [
        "for (int64_t d = 0; d < directions; ++d) {",
        f"const {t} sgn = d ? ({t})-1 : ({t})1;",
        "const int64_t s = src[r * directions + d], e = dst[r * directions + d];",
        f"const {t} *xs = x + s * {x_width}, *axs = ax + s * {x_width};",
        f"const {t} *gt = g + e * {out_width};",
        f"{t} *ggt = grad_g ? grad_g + e * {out_width} : 0;",
        f"{t} *gxs = grad_x ? grad_x + s * {x_width} : 0;",
    ]
    for p in paths:
        code += _double_path(t, p)
    code.append("}")  # directions
    code += ["if (gyr) {", *y_finish, "}", "}", "}"]
    return "\n".join(code)


def _double_path(t: str, p: _Path) -> list[str]:
    """The double backward's code of one path, for one direction of a row."""
    code: list[str] = []
    simd = f'_Pragma("omp simd") for (int64_t v = 0; v < {p.v}; ++v) {{'
    qa = [f"const {t} qa{m} = {p.sign}({t}){_literal(c)} * ay{j};" for m, i, j, k, c in p.entries]
    axs = [f"const {t} ax{i} = axs[{p.x_off + i * p.v} + v];" for i in range(p.di)]
    gs = [f"const {t} g{k} = gt[{p.o_off + k * p.o_stride} + v];" for k in range(p.do)]
    ws = [f"const {t} wv = wr[{p.w_off} + v];", f"const {t} awv = awr[{p.w_off} + v];"]
    ks = [k for k in p.by_k if p.by_k[k]]
    # the message's derivative along (ay, ax): sum of qa x + q ax
    za = {k: " + ".join(f"qa{m} * x{i} + q{m} * ax{i}" for m, i, _, _, _ in p.by_k[k]) for k in ks}
    code += ["{", *p.q, *qa, "if (ggt) {", simd, *p.x, *axs, *ws]
    code += [
        f"ggt[{p.o_off + k * p.o_stride} + v] += awv * ({p.z(k)}) + wv * ({za[k]});" for k in ks
    ]
    code += ["}", "}", "if (gwr) {", simd, *p.x, *axs, *gs]
    code += [f"gwr[{p.w_off} + v] += " + " + ".join(f"g{k} * ({za[k]})" for k in ks) + ";"]
    code += ["}", "}", "if (gyr) {", simd, *p.x, *axs, *gs, *ws]
    for j, terms in p.by_j.items():
        total = " + ".join(
            f"{p.sign}({t}){_literal(c)} * g{k} * (awv * x{i} + wv * ax{i})"
            for _, i, _, k, c in terms
        )
        code.append(f"{_y_vector(p.x_off, j)}[v] += {total};")
    code += ["}", "}", "if (gxs) {", simd, *gs, *ws]
    for i, terms in p.by_i.items():
        if terms:
            total = " + ".join(f"(q{m} * awv + qa{m} * wv) * g{k}" for m, _, _, k, _ in terms)
            code.append(f"gxs[{p.x_off + i * p.v} + v] += {total};")
    code += ["}", "}", "}"]
    return code


def specialized_source(layout: NativeLayout) -> str:
    """A C source of the native kernels specialised to ``layout``'s table of paths."""
    types = (("float", "f32"), ("double", "f64"))
    rows = [_rows_source(layout, t, s) for t, s in types]
    if layout.channelwise:  # the one-pass double backward
        rows += [_double_source(layout, t, s) for t, s in types] + ["#define DOUBLE_ROWS 1"]
    return "\n".join(
        ["#include <stdint.h>", *rows, "#define SPECIALIZED 1", GENERIC_SOURCE.read_text()]
    )
