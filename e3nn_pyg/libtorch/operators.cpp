// e3nn_pyg's operators for C++ processes: libtorch without Python.
//
// An AOTInductor package of an e3nn_pyg model calls the package's custom operators
// (e3nn_pyg::native_conv, e3nn_pyg::radius_search, ...). A Python process defines them
// with torch.library when it imports e3nn_pyg; a C++ process that loads the package with
// torch::inductor::AOTIModelPackageLoader gets them from this library instead: load it
// (dlopen, or link it) before running the package. Never load it into a Python process
// that imports e3nn_pyg: the two definitions of the same operators would clash.
//
// The schemas are those of the Python operators, character for character
// (tests/test_libtorch.py compares them). The implementations run on CPU:
//
// - native_conv, native_conv_backward: the generic, table-driven channel-wise loops of
//   tensor_product/native/channelwise.c (compiled into this library), on the same checked
//   inputs as tensor_product/native/ops.py; native_conv_double_backward composed of the
//   two (as ops.py does for the generic loops);
// - radius_search: every pair within each molecule, |pos[j] - pos[i]| < r compared in the
//   dtype of pos, edges sorted by target, then source, as graph/search.py returns them;
// - periodic_radius_search: every image p_j + s C (s integer, zero along non-periodic axes)
//   with |(pos[j] - pos[i]) + s C| < r, tested in the dtype of pos, sorted by target,
//   source, then shift, as graph/periodic.py returns them (its candidates enumerated per
//   pair: O(N^2) per structure, meant for the cells of MD runs, not for large supercells).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using at::Tensor;

// The entry points of channelwise.c (argument order of its cw_forward_* and cw_backward_*).
extern "C" {
int cw_forward_f32(int64_t, int64_t, const int64_t*, const int64_t*, const float*, int64_t,
                   const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t,
                   const int64_t*, int64_t, const int32_t*, const float*, int64_t, int);
int cw_forward_f64(int64_t, int64_t, const int64_t*, const int64_t*, const double*, int64_t,
                   const double*, int64_t, const double*, int64_t, double*, int64_t, int64_t,
                   const int64_t*, int64_t, const int32_t*, const double*, int64_t, int);
int cw_backward_f32(int64_t, int64_t, const int64_t*, const int64_t*, const float*, int64_t,
                    const float*, int64_t, const float*, int64_t, int64_t, const float*,
                    int64_t, const int64_t*, int64_t, const int32_t*, const float*, float*,
                    float*, float*, int64_t, int);
int cw_backward_f64(int64_t, int64_t, const int64_t*, const int64_t*, const double*, int64_t,
                    const double*, int64_t, const double*, int64_t, int64_t, const double*,
                    int64_t, const int64_t*, int64_t, const int32_t*, const double*, double*,
                    double*, double*, int64_t, int);
}

namespace {

template <typename T>
struct Loops;
template <>
struct Loops<float> {
  static constexpr auto forward = cw_forward_f32;
  static constexpr auto backward = cw_backward_f32;
};
template <>
struct Loops<double> {
  static constexpr auto forward = cw_forward_f64;
  static constexpr auto backward = cw_backward_f64;
};

// -- the layout: NativeLayout's three tensors (tensor_product/native/layout.py) ---------------
// table = [key, weight_width, sh_width, x_width, out_width, channelwise, scratch, paths...],
// every path a row of these columns (NativePath's fields, in order):
enum Column { V, XOFF, OOFF, OSTRIDE, WOFF, ODD, NZ0, NZ1, DI, DO, U, COLUMNS };
constexpr int64_t kHeader = 7;

struct Layout {
  Tensor paths;         // [num_paths * COLUMNS] int64
  Tensor ijk;           // [entries, 3] int32
  Tensor coefficients;  // [entries] in the dtype of the features
  int64_t num_paths, weight_width, sh_width, x_width, out_width, scratch;
};

// Whether path `p` reads and writes inside the four matrices and the scratch buffer (the C
// loops index raw memory): NativeLayout._require_in_bounds.
bool path_in_bounds(const Layout& layout, const int64_t* p, const int32_t* ijk, int64_t entries) {
  if (*std::min_element(p, p + COLUMNS) < 0 || p[V] <= 0 || p[NZ1] > entries ||
      p[NZ0] > p[NZ1]) {
    return false;
  }
  const int64_t last_out = p[OOFF] + (p[DO] - 1) * p[OSTRIDE] + p[V];
  bool inside = p[XOFF] + p[DI] * p[V] <= layout.x_width &&
                p[WOFF] + p[V] <= layout.weight_width && last_out <= layout.out_width &&
                std::max(p[DI], 2 * p[DO]) * p[V] <= layout.scratch;
  for (int64_t n = p[NZ0]; inside && n < p[NZ1]; ++n) {
    const int32_t* e = ijk + 3 * n;
    inside = e[0] >= 0 && e[0] < p[DI] && e[1] >= 0 && e[1] < layout.sh_width && e[2] >= 0 &&
             e[2] < p[DO];
  }
  return inside;
}

// The layout of the operators' tensors, its coefficients in `dtype`; refuses a layout that
// is not channel-wise (the generic loops are channel-wise only) or reads out of bounds.
Layout read_layout(const Tensor& table, const Tensor& ijk, const Tensor& coefficients,
                   at::ScalarType dtype) {
  TORCH_CHECK(table.scalar_type() == at::kLong && table.dim() == 1 &&
                  table.numel() >= kHeader && (table.numel() - kHeader) % COLUMNS == 0 &&
                  ijk.scalar_type() == at::kInt && ijk.dim() == 2 && ijk.size(1) == 3 &&
                  coefficients.dim() == 1 && coefficients.size(0) == ijk.size(0),
              "native kernels: these are not the tensors of a NativeLayout");
  const Tensor header = table.cpu().contiguous();
  const int64_t* h = header.data_ptr<int64_t>();
  TORCH_CHECK(h[5] == 1,
              "native kernels: this layout mixes channels (a fully connected kernel); the "
              "C++ operator library runs channel-wise layouts only (the generic loops of "
              "channelwise.c). Run this package from Python (import e3nn_pyg; "
              "torch._inductor.aoti_load_package), or export a model with channel-wise "
              "convolutions");
  Layout layout{header.narrow(0, kHeader, header.numel() - kHeader).contiguous(),
                ijk.cpu().contiguous(),
                coefficients.cpu().to(at::kDouble).to(dtype).contiguous(),
                (header.numel() - kHeader) / COLUMNS, h[1], h[2], h[3], h[4], h[6]};
  const int64_t* paths = layout.paths.data_ptr<int64_t>();
  for (int64_t n = 0; n < layout.num_paths; ++n) {
    TORCH_CHECK(path_in_bounds(layout, paths + n * COLUMNS, layout.ijk.data_ptr<int32_t>(),
                               layout.ijk.size(0)),
                "native kernels: path ", n, " of the layout is out of bounds");
  }
  return layout;
}

// -- input checks (ops.py's _check and _check_rows) -------------------------------------------
void check_features(const Layout& layout, const Tensor& weights, const Tensor& sh,
                    const Tensor& x, const Tensor& src) {
  const int64_t rows = src.dim() == 1 ? src.size(0) : -1;
  const std::vector<std::pair<const char*, const Tensor*>> named = {
      {"weights", &weights}, {"harmonics", &sh}, {"features", &x}};
  const std::vector<std::vector<int64_t>> expected = {
      {rows, layout.weight_width}, {rows, layout.sh_width}, {x.size(0), layout.x_width}};
  for (size_t n = 0; n < named.size(); ++n) {
    const Tensor& t = *named[n].second;
    TORCH_CHECK(t.sizes().vec() == expected[n] && t.scalar_type() == x.scalar_type() &&
                    t.device().is_cpu(),
                "native kernels: ", named[n].first, " are ", t.scalar_type(), " ", t.sizes(),
                " on ", t.device(), ", expected ", x.scalar_type(), " ",
                at::IntArrayRef(expected[n]), " on cpu");
  }
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "native kernels take float32 or float64, got ", x.scalar_type());
}

// Every entry of `index` in [0, bound), else an IndexError naming the lowest negative entry,
// or else the highest one.
void check_index_range(const Tensor& index, int64_t bound, const char* what) {
  if (index.numel() == 0) {
    return;
  }
  const int64_t low = index.min().item<int64_t>(), high = index.max().item<int64_t>();
  TORCH_CHECK_INDEX(low >= 0 && high < bound, what, " ", low < 0 ? low : high,
                    " out of range [0, ", bound, ")");
}

// The rows must be in range: the C loops index raw memory. A paired row also runs from its
// target to its source. Returns the number of paired rows.
int64_t check_rows(const Tensor& src, const Tensor& dst, const Tensor& paired, int64_t num_src,
                   int64_t num_dst) {
  TORCH_CHECK(src.scalar_type() == at::kLong && dst.scalar_type() == at::kLong &&
                  src.dim() == 1 && dst.sizes() == src.sizes(),
              "native kernels: src and dst must be int64 [rows], got ", src.scalar_type(),
              " ", src.sizes(), " and ", dst.scalar_type(), " ", dst.sizes());
  TORCH_CHECK(paired.numel() == 1 && !paired.is_floating_point() &&
                  paired.item<int64_t>() >= 0 && paired.item<int64_t>() <= src.size(0),
              "native kernels: num_paired must count rows in [0, ", src.size(0), "]");
  const int64_t num_paired = paired.item<int64_t>();
  check_index_range(src, num_src, "native kernels: source node");
  check_index_range(dst, num_dst, "native kernels: target node");
  check_index_range(src.narrow(0, 0, num_paired), num_dst,
                    "native kernels: target node (reverse)");
  check_index_range(dst.narrow(0, 0, num_paired), num_src,
                    "native kernels: source node (reverse)");
  return num_paired;
}

// -- the rows in groups (fused.row_groups): paired rows run both ways, then single rows ------
struct RowGroup {
  int64_t directions, first;
  Tensor src, dst;  // [rows, directions] int64
};

std::vector<RowGroup> row_groups(const Tensor& src, const Tensor& dst, int64_t num_paired) {
  std::vector<RowGroup> groups;
  if (num_paired > 0) {
    const Tensor s = src.narrow(0, 0, num_paired), d = dst.narrow(0, 0, num_paired);
    groups.push_back({2, 0, at::stack({s, d}, 1).contiguous(), at::stack({d, s}, 1).contiguous()});
  }
  const int64_t single = src.size(0) - num_paired;
  if (single > 0) {
    groups.push_back({1, num_paired, src.narrow(0, num_paired, single).unsqueeze(1).contiguous(),
                      dst.narrow(0, num_paired, single).unsqueeze(1).contiguous()});
  }
  return groups;
}

// Row `first` of a contiguous matrix (nullptr for an undefined tensor).
template <typename T>
T* row(const Tensor& t, int64_t first) {
  return t.defined() ? t.data_ptr<T>() + first * t.size(1) : nullptr;
}

void check_allocated(int failed) {
  TORCH_CHECK(failed == 0, "native kernels: the native convolution could not allocate its buffers");
}

template <typename T>
void forward_loops(const Layout& L, const Tensor& w, const Tensor& sh, const Tensor& x,
                   const std::vector<RowGroup>& groups, Tensor& out) {
  for (const RowGroup& g : groups) {
    check_allocated(Loops<T>::forward(
        g.src.size(0), g.directions, g.src.data_ptr<int64_t>(), g.dst.data_ptr<int64_t>(),
        row<T>(w, g.first), w.size(1), row<T>(sh, g.first), sh.size(1), x.data_ptr<T>(),
        x.size(1), out.data_ptr<T>(), out.size(1), out.size(0), L.paths.data_ptr<int64_t>(),
        L.num_paths, L.ijk.data_ptr<int32_t>(), L.coefficients.data_ptr<T>(), L.scratch,
        at::get_num_threads()));
  }
}

template <typename T>
void backward_loops(const Layout& L, const Tensor& w, const Tensor& sh, const Tensor& x,
                    const Tensor& grad, const std::vector<RowGroup>& groups,
                    std::vector<Tensor>& grads) {
  for (const RowGroup& g : groups) {
    check_allocated(Loops<T>::backward(
        g.src.size(0), g.directions, g.src.data_ptr<int64_t>(), g.dst.data_ptr<int64_t>(),
        row<T>(w, g.first), w.size(1), row<T>(sh, g.first), sh.size(1), x.data_ptr<T>(),
        x.size(1), x.size(0), grad.data_ptr<T>(), L.out_width, L.paths.data_ptr<int64_t>(),
        L.num_paths, L.ijk.data_ptr<int32_t>(), L.coefficients.data_ptr<T>(),
        row<T>(grads[0], g.first), row<T>(grads[1], g.first), row<T>(grads[2], 0), L.scratch,
        at::get_num_threads()));
  }
}

// -- the convolution operators ----------------------------------------------------------------
Tensor native_conv(const Tensor& weights, const Tensor& sh, const Tensor& x, const Tensor& src,
                   const Tensor& dst, const Tensor& num_paired, c10::SymInt num_dst_,
                   c10::SymInt out_width_, const Tensor& table, const Tensor& ijk,
                   const Tensor& coefficients) {
  const int64_t num_dst = num_dst_.guard_int(__FILE__, __LINE__);
  const int64_t out_width = out_width_.guard_int(__FILE__, __LINE__);
  const Layout layout = read_layout(table, ijk, coefficients, x.scalar_type());
  check_features(layout, weights, sh, x, src);
  const int64_t paired = check_rows(src, dst, num_paired, x.size(0), num_dst);
  TORCH_CHECK(out_width == layout.out_width, "native kernels: out_width ", out_width,
              ", the layout's is ", layout.out_width);
  const Tensor w = weights.contiguous(), y = sh.contiguous(), xs = x.contiguous();
  Tensor out = at::zeros({num_dst, out_width}, x.options());  // [N_t, out_width]
  const auto groups = row_groups(src, dst, paired);
  if (x.scalar_type() == at::kFloat) {
    forward_loops<float>(layout, w, y, xs, groups, out);
  } else {
    forward_loops<double>(layout, w, y, xs, groups, out);
  }
  return out;
}

std::tuple<Tensor, Tensor, Tensor> native_conv_backward(
    const Tensor& weights, const Tensor& sh, const Tensor& x, const Tensor& grad,
    const Tensor& src, const Tensor& dst, const Tensor& num_paired, c10::List<bool> needs,
    const Tensor& table, const Tensor& ijk, const Tensor& coefficients) {
  TORCH_CHECK(needs.size() == 3, "native kernels: needs flags weights, sh and x (3 bools), got ",
              needs.size());
  const Layout layout = read_layout(table, ijk, coefficients, x.scalar_type());
  check_features(layout, weights, sh, x, src);
  const Tensor w = weights.contiguous(), y = sh.contiguous(), xs = x.contiguous();
  const Tensor g = grad.contiguous();
  TORCH_CHECK(g.dim() == 2 && g.size(1) == layout.out_width && g.scalar_type() == x.scalar_type(),
              "native kernels: gradient ", g.sizes(), " ", g.scalar_type());
  const int64_t paired = check_rows(src, dst, num_paired, x.size(0), g.size(0));
  std::vector<Tensor> grads = {w, y, xs};
  for (size_t n = 0; n < 3; ++n) {
    grads[n] = needs.get(n) ? at::zeros_like(grads[n]) : Tensor();
  }
  const auto groups = row_groups(src, dst, paired);
  if (x.scalar_type() == at::kFloat) {
    backward_loops<float>(layout, w, y, xs, g, groups, grads);
  } else {
    backward_loops<double>(layout, w, y, xs, g, groups, grads);
  }
  for (Tensor& t : grads) {
    t = t.defined() ? t : x.new_empty({0});  // operators return tensors
  }
  return {grads[0], grads[1], grads[2]};
}

void accumulate(Tensor& total, const Tensor& value) {
  total = total.defined() ? total + value : value;
}

// For cotangents (a_w, a_sh, a_x) of the backward's three gradients, the gradients to
// (weights, sh, x, grad) flagged in `needs`: every gradient is linear in each argument, so
// they are sums of forwards and backwards with one argument substituted (ops.py's
// _composed_double, what Python runs for the generic loops).
std::tuple<Tensor, Tensor, Tensor, Tensor> native_conv_double_backward(
    const Tensor& weights, const Tensor& sh, const Tensor& x, const Tensor& grad,
    std::vector<Tensor> cotangents, const Tensor& src, const Tensor& dst,
    const Tensor& num_paired, c10::List<bool> needs, const Tensor& table, const Tensor& ijk,
    const Tensor& coefficients) {
  TORCH_CHECK(cotangents.size() == 3 && needs.size() == 4,
              "native kernels: 3 cotangents and 4 needs flags expected, got ", cotangents.size(),
              " and ", needs.size());
  const std::vector<Tensor> inputs = {weights, sh, x, grad};
  std::vector<Tensor> results(4);
  for (size_t slot = 0; slot < 3; ++slot) {
    std::vector<Tensor> substituted = {weights, sh, x};
    substituted[slot] = cotangents[slot];
    c10::List<bool> partial;
    for (size_t other = 0; other < 3; ++other) {
      partial.push_back(needs.get(other) && other != slot);
    }
    if (partial.get(0) || partial.get(1) || partial.get(2)) {
      const auto values = native_conv_backward(substituted[0], substituted[1], substituted[2],
                                               grad, src, dst, num_paired, partial, table, ijk,
                                               coefficients);
      const std::vector<Tensor> list = {std::get<0>(values), std::get<1>(values),
                                        std::get<2>(values)};
      for (size_t other = 0; other < 3; ++other) {
        if (partial.get(other)) accumulate(results[other], list[other]);
      }
    }
    if (needs.get(3)) {
      accumulate(results[3], native_conv(substituted[0], substituted[1], substituted[2], src,
                                         dst, num_paired, grad.size(0), grad.size(1), table,
                                         ijk, coefficients));
    }
  }
  for (size_t n = 0; n < 4; ++n) {
    if (!results[n].defined()) {
      results[n] = needs.get(n) ? at::zeros_like(inputs[n]) : x.new_empty({0});
    }
  }
  return {results[0], results[1], results[2], results[3]};
}

// -- the radius search (graph/search.py) ------------------------------------------------------
// [first atom, end) of the molecule of every atom; batch must be sorted.
std::vector<std::pair<int64_t, int64_t>> molecule_ranges(const Tensor& batch) {
  const int64_t* b = batch.data_ptr<int64_t>();
  const int64_t n = batch.numel();
  std::vector<std::pair<int64_t, int64_t>> ranges(n);
  for (int64_t start = 0, end = 0; start < n; start = end) {
    TORCH_CHECK(b[start] >= 0 && (start == 0 || b[start] > b[start - 1]),
                "radius_search: batch must be sorted and non-negative (atoms of each "
                "structure consecutive), got ", b[start], " at atom ", start);
    for (end = start; end < n && b[end] == b[start]; ++end) {
    }
    std::fill(ranges.begin() + start, ranges.begin() + end, std::make_pair(start, end));
  }
  return ranges;
}

// Keep the `cap` nearest sources (ties: the lower source) of one target, in source order
// (search.py's _keep_nearest). Returns whether some were dropped.
template <typename T>
bool keep_nearest(std::vector<std::pair<T, int64_t>>& near, int64_t cap) {
  if (static_cast<int64_t>(near.size()) <= cap) {
    return false;
  }
  std::sort(near.begin(), near.end());  // by (distance, source)
  near.resize(cap);
  std::sort(near.begin(), near.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return true;
}

// Edges [2, E] (source; target) with |pos[source] - pos[target]| < r in each molecule, the
// squared norm summed x, y, z left to right in T (search.py's _squared_norm rounding), sorted
// by target, then source.
template <typename T>
Tensor radius_edges(const Tensor& pos, const Tensor& batch, double r, bool loop,
                    std::optional<int64_t> cap) {
  const T* p = pos.data_ptr<T>();
  const T r2 = static_cast<T>(r * r);  // rounded as torch.tensor(r * r, dtype=pos.dtype)
  const auto ranges = molecule_ranges(batch);
  std::vector<int64_t> source, target;
  std::vector<std::pair<T, int64_t>> near;
  int64_t truncated = 0;
  for (int64_t i = 0; i < pos.size(0); ++i) {
    near.clear();
    for (int64_t j = ranges[i].first; j < ranges[i].second; ++j) {
      const T dx = p[3 * j] - p[3 * i], dy = p[3 * j + 1] - p[3 * i + 1];
      const T dz = p[3 * j + 2] - p[3 * i + 2];
      const T d2 = dx * dx + dy * dy + dz * dz;  // (no contraction: -ffp-contract=off)
      if (d2 < r2 && (loop || j != i)) near.emplace_back(d2, j);
    }
    truncated += cap.has_value() && keep_nearest(near, *cap);
    for (const auto& [d2, j] : near) {
      source.push_back(j);
      target.push_back(i);
    }
  }
  if (truncated > 0) {
    TORCH_WARN("radius_graph: max_num_neighbors=", *cap, " dropped edges of ", truncated,
               " of ", pos.size(0), " nodes (the nearest ", *cap, " were kept); the graph is "
               "no longer symmetric and models using it lose exact equivariance.");
  }
  const int64_t edges = static_cast<int64_t>(source.size());
  Tensor edge_index = at::empty({2, edges}, pos.options().dtype(at::kLong));
  std::copy(source.begin(), source.end(), edge_index.data_ptr<int64_t>());
  std::copy(target.begin(), target.end(), edge_index.data_ptr<int64_t>() + edges);
  return edge_index;
}

Tensor radius_search(const Tensor& pos, const Tensor& batch, double r, bool loop,
                     std::optional<c10::SymInt> max_num_neighbors, c10::string_view backend) {
  TORCH_CHECK(backend == "auto" || backend == "torch" || backend == "torch_cluster",
              "radius_search: backend must be 'auto', 'torch' or 'torch_cluster', got '",
              std::string(backend), "' (all give the same edges; C++ runs its own search)");
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == 3 && pos.device().is_cpu() &&
                  (pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble),
              "radius_search: pos must be float32 or float64 [N, 3] on cpu, got ",
              pos.scalar_type(), " ", pos.sizes(), " on ", pos.device());
  TORCH_CHECK(batch.scalar_type() == at::kLong && batch.dim() == 1 &&
                  batch.size(0) == pos.size(0) && batch.device().is_cpu(),
              "radius_search: batch must be int64 [", pos.size(0), "] on cpu, got ",
              batch.scalar_type(), " ", batch.sizes());
  TORCH_CHECK(r > 0, "radius_search: r must be positive, got ", r);
  std::optional<int64_t> cap;
  if (max_num_neighbors.has_value()) {
    cap = max_num_neighbors->guard_int(__FILE__, __LINE__);
    TORCH_CHECK(*cap >= 0, "radius_search: max_num_neighbors must be >= 0, got ", *cap);
  }
  const Tensor p = pos.contiguous(), b = batch.contiguous();
  if (pos.scalar_type() == at::kFloat) {
    return radius_edges<float>(p, b, r, loop, cap);
  }
  return radius_edges<double>(p, b, r, loop, cap);
}

// -- the periodic radius search (graph/periodic.py) ------------------------------------------
using Vec3 = std::array<double, 3>;

Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

Vec3 unit(const Vec3& a) {
  const double norm = std::sqrt(dot(a, a));
  return {a[0] / norm, a[1] / norm, a[2] / norm};
}

// The reciprocal vectors b_k (b_k . a_l = delta_kl) of a cell's periodic rows, completed by
// an orthonormal basis of their complement (whose shifts are zero: any completion gives the
// same b_k of the periodic axes); zero vectors for the other axes.
std::array<Vec3, 3> reciprocal_vectors(const double* cell, const bool* pbc) {
  std::array<Vec3, 3> a;
  std::vector<int> periodic;
  for (int k = 0; k < 3; ++k) {
    a[k] = {cell[3 * k], cell[3 * k + 1], cell[3 * k + 2]};
    if (pbc[k]) periodic.push_back(k);
  }
  std::array<Vec3, 3> b{};
  if (periodic.empty()) return b;
  std::vector<Vec3> rows;
  for (int k : periodic) rows.push_back(a[k]);
  if (rows.size() == 1) {  // two unit vectors perpendicular to the one periodic row
    const Vec3& v = rows[0];
    const int least = std::abs(v[0]) <= std::abs(v[1]) && std::abs(v[0]) <= std::abs(v[2]) ? 0
                      : std::abs(v[1]) <= std::abs(v[2])                                  ? 1
                                                                                          : 2;
    Vec3 axis{};
    axis[least] = 1.0;
    rows.push_back(unit(cross(v, axis)));
  }
  if (rows.size() == 2) rows.push_back(unit(cross(rows[0], rows[1])));
  const double volume = dot(rows[0], cross(rows[1], rows[2]));
  TORCH_CHECK(std::isfinite(volume) && volume != 0.0,
              "periodic_radius_search: the periodic lattice vectors of a cell are linearly "
              "dependent");
  for (size_t n = 0; n < periodic.size(); ++n) {
    const Vec3 c = cross(rows[(n + 1) % 3], rows[(n + 2) % 3]);
    b[periodic[n]] = {c[0] / volume, c[1] / volume, c[2] / volume};
  }
  return b;
}

// r enlarged by a bound on the rounding of (pos_j - pos_i) + s @ cell in the dtype of pos
// (periodic.py's _reach): every edge of the exact test lies among the enumerated shifts.
double search_reach(const Tensor& pos, const Tensor& cell, const Tensor& pbc,
                    const std::vector<std::array<Vec3, 3>>& reciprocal, double r) {
  const double extent = 2 * pos.abs().max().item<double>();
  double skew = 0, span = 0;
  for (size_t g = 0; g < reciprocal.size(); ++g) {
    double skew_g = 0, span_g = 0;
    for (int k = 0; k < 3; ++k) {
      if (!pbc[g][k].item<bool>()) continue;
      const double length = cell[g][k].norm().item<double>();
      const double b = std::sqrt(dot(reciprocal[g][k], reciprocal[g][k]));
      skew_g += length * b;
      span_g += (r * b + 2) * length;
    }
    skew = std::max(skew, skew_g);
    span = std::max(span, span_g);
  }
  const double eps = pos.scalar_type() == at::kFloat ? std::numeric_limits<float>::epsilon()
                                                     : std::numeric_limits<double>::epsilon();
  return r * (1 + 1e-6) + 64 * eps * (extent * (1 + skew) + span + r);
}

// Periodic edges of one pair (target i, source j): every integer shift s (zero along
// non-periodic axes) whose image is within reach along each periodic axis, tested exactly
// on (pos[j] - pos[i]) + (s_0 a_0 + s_1 a_1 + s_2 a_2) in T, |v|^2 < r2, summed left to right
// as periodic.py's _shift_vectors and _squared_norm round them. Shifts come in
// lexicographic order.
template <typename T>
void periodic_pair(const T* pi, const T* pj, const T* cell, const std::array<Vec3, 3>& b,
                   double reach, T r2, bool self, std::vector<std::array<int64_t, 3>>& shifts) {
  int64_t low[3], high[3];
  for (int k = 0; k < 3; ++k) {
    // the image's fractional offset f_j - f_i + s must lie within reach |b_k| of zero
    const double offset = b[k][0] * (double(pj[0]) - double(pi[0])) +
                          b[k][1] * (double(pj[1]) - double(pi[1])) +
                          b[k][2] * (double(pj[2]) - double(pi[2]));
    const double half = reach * std::sqrt(dot(b[k], b[k]));
    low[k] = half > 0 ? static_cast<int64_t>(std::floor(-offset - half)) - 1 : 0;
    high[k] = half > 0 ? static_cast<int64_t>(std::ceil(-offset + half)) + 1 : 0;
  }
  const T d[3] = {pj[0] - pi[0], pj[1] - pi[1], pj[2] - pi[2]};
  for (int64_t s0 = low[0]; s0 <= high[0]; ++s0) {
    for (int64_t s1 = low[1]; s1 <= high[1]; ++s1) {
      for (int64_t s2 = low[2]; s2 <= high[2]; ++s2) {
        const T f0 = static_cast<T>(s0), f1 = static_cast<T>(s1), f2 = static_cast<T>(s2);
        T v[3];
        for (int c = 0; c < 3; ++c) {
          v[c] = d[c] + (f0 * cell[c] + f1 * cell[3 + c] + f2 * cell[6 + c]);
        }
        const bool zero = s0 == 0 && s1 == 0 && s2 == 0;
        if (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < r2 && !(self && zero)) {
          shifts.push_back({s0, s1, s2});
        }
      }
    }
  }
}

// At most kMaxCandidates (pair, shift) candidates: more means a cell far smaller than the
// cutoff (e.g. in the wrong unit), whose exact graph would not fit in memory.
constexpr double kMaxCandidates = 1u << 30;

void check_image_count(const Tensor& batch, const std::vector<std::array<Vec3, 3>>& reciprocal,
                       double reach, double r) {
  const Tensor sizes = at::bincount(batch, {}, static_cast<int64_t>(reciprocal.size()));
  double total = 0;
  for (size_t g = 0; g < reciprocal.size(); ++g) {
    double shifts = 1;
    for (const Vec3& b : reciprocal[g]) {  // (zero for a non-periodic axis: one shift)
      shifts *= dot(b, b) > 0 ? 2 * std::ceil(reach * std::sqrt(dot(b, b))) + 3 : 1;
    }
    const double atoms = static_cast<double>(sizes[g].item<int64_t>());
    total += atoms * atoms * shifts;
  }
  TORCH_CHECK(total <= kMaxCandidates, "periodic_radius_search: the cutoff ", r, " reaches ",
              total, " candidate images of pairs of atoms (more than ", kMaxCandidates,
              "): check the cell (its unit?)");
}

// (edge_index [2, E], shifts [E, 3]) of every atom and structure, sorted by target, source,
// then shift.
template <typename T>
std::tuple<Tensor, Tensor> periodic_edges(const Tensor& pos, const Tensor& batch,
                                          const Tensor& cell, const Tensor& pbc, double r,
                                          bool loop) {
  const int64_t n = pos.size(0);
  std::vector<std::array<Vec3, 3>> reciprocal;
  const Tensor cell64 = cell.to(at::kDouble).contiguous();
  for (int64_t g = 0; g < cell.size(0); ++g) {
    reciprocal.push_back(reciprocal_vectors(cell64.data_ptr<double>() + 9 * g,
                                            pbc.data_ptr<bool>() + 3 * g));
  }
  const double reach = search_reach(pos, cell64, pbc, reciprocal, r);
  check_image_count(batch, reciprocal, reach, r);
  const T* p = pos.data_ptr<T>();
  const T* c = cell.data_ptr<T>();
  const int64_t* graph = batch.data_ptr<int64_t>();
  const T r2 = static_cast<T>(r * r);
  std::vector<int64_t> source, target;
  std::vector<std::array<int64_t, 3>> shifts, found;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (graph[j] != graph[i]) continue;
      found.clear();
      periodic_pair<T>(p + 3 * i, p + 3 * j, c + 9 * graph[i], reciprocal[graph[i]], reach, r2,
                       !loop && i == j, found);
      source.insert(source.end(), found.size(), j);
      target.insert(target.end(), found.size(), i);
      shifts.insert(shifts.end(), found.begin(), found.end());
    }
  }
  const auto edges = static_cast<int64_t>(source.size());
  Tensor edge_index = at::empty({2, edges}, pos.options().dtype(at::kLong));
  std::copy(source.begin(), source.end(), edge_index.data_ptr<int64_t>());
  std::copy(target.begin(), target.end(), edge_index.data_ptr<int64_t>() + edges);
  Tensor shift = at::empty({edges, 3}, pos.options().dtype(at::kLong));
  for (int64_t e = 0; e < edges; ++e) {
    std::copy(shifts[e].begin(), shifts[e].end(), shift.data_ptr<int64_t>() + 3 * e);
  }
  return {edge_index, shift.to(pos.scalar_type())};
}

std::tuple<Tensor, Tensor> periodic_radius_search(const Tensor& pos, const Tensor& batch,
                                                  const Tensor& cell, const Tensor& pbc,
                                                  double r, bool loop) {
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == 3 && pos.device().is_cpu() &&
                  (pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble),
              "periodic_radius_search: pos must be float32 or float64 [N, 3] on cpu, got ",
              pos.scalar_type(), " ", pos.sizes(), " on ", pos.device());
  TORCH_CHECK(cell.dim() == 3 && cell.size(1) == 3 && cell.size(2) == 3 &&
                  cell.scalar_type() == pos.scalar_type() && pbc.scalar_type() == at::kBool &&
                  pbc.dim() == 2 && pbc.size(0) == cell.size(0) && pbc.size(1) == 3,
              "periodic_radius_search: cell must be [G, 3, 3] in the dtype of pos and pbc bool "
              "[G, 3], got ", cell.scalar_type(), " ", cell.sizes(), " and ", pbc.scalar_type(),
              " ", pbc.sizes());
  TORCH_CHECK(batch.scalar_type() == at::kLong && batch.dim() == 1 &&
                  batch.size(0) == pos.size(0),
              "periodic_radius_search: batch must be int64 [", pos.size(0), "]");
  check_index_range(batch, cell.size(0), "periodic_radius_search: structure");
  TORCH_CHECK(r > 0, "periodic_radius_search: r must be positive, got ", r);
  if (pos.size(0) == 0) {
    return {at::empty({2, 0}, pos.options().dtype(at::kLong)), pos.new_empty({0, 3})};
  }
  const Tensor p = pos.contiguous(), b = batch.contiguous(), c = cell.contiguous();
  const Tensor periodic = pbc.contiguous();
  if (pos.scalar_type() == at::kFloat) {
    return periodic_edges<float>(p, b, c, periodic, r, loop);
  }
  return periodic_edges<double>(p, b, c, periodic, r, loop);
}

}  // namespace

TORCH_LIBRARY(e3nn_pyg, m) {
  m.def(
      "native_conv(Tensor weights, Tensor sh, Tensor x, Tensor src, Tensor dst, "
      "Tensor num_paired, SymInt num_dst, SymInt out_width, Tensor table, Tensor ijk, "
      "Tensor coefficients) -> Tensor");
  m.def(
      "native_conv_backward(Tensor weights, Tensor sh, Tensor x, Tensor grad, Tensor src, "
      "Tensor dst, Tensor num_paired, bool[] needs, Tensor table, Tensor ijk, "
      "Tensor coefficients) -> (Tensor, Tensor, Tensor)");
  m.def(
      "native_conv_double_backward(Tensor weights, Tensor sh, Tensor x, Tensor grad, "
      "Tensor[] cotangents, Tensor src, Tensor dst, Tensor num_paired, bool[] needs, "
      "Tensor table, Tensor ijk, Tensor coefficients) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "radius_search(Tensor pos, Tensor batch, float r, bool loop, SymInt? max_num_neighbors, "
      "str backend) -> Tensor");
  m.def(
      "periodic_radius_search(Tensor pos, Tensor batch, Tensor cell, Tensor pbc, float r, "
      "bool loop) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(e3nn_pyg, CPU, m) {
  m.impl("native_conv", native_conv);
  m.impl("native_conv_backward", native_conv_backward);
  m.impl("native_conv_double_backward", native_conv_double_backward);
  m.impl("radius_search", radius_search);
  m.impl("periodic_radius_search", periodic_radius_search);
}
