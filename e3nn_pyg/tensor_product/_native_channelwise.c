/* The channel-wise tensor-product convolution as one fused loop per edge (see native.py).
 *
 * For every row r (an edge, or an undirected pair of edges when directions == 2), every
 * direction d (source s, target t) and every path p (input block b -> output block o
 * through filter l_f), with V = mul of b and the path's sparse Clebsch-Gordan entries
 * (i, j, k, c) (c holds the normalization; j is the column of Y):
 *
 *     out[t, o, k, v] += sum_(i,j,k,c) sign * c * Y[r, j] * x[s, b, i, v] * w[r, p, v]
 *
 * with sign = -1 for the second direction of odd filters (Y(-r) = (-1)^l Y(r)). Node
 * features are in "ir_mul" layout (channels innermost) so the loops over v vectorise.
 * The backward computes the three gradients of the same 4-linear form in one pass.
 *
 * Threads: rows are split into contiguous ranges; every thread accumulates its scattered
 * node sums (out, grad_x) into a private buffer, summed into the output at the end in a
 * fixed order, so results do not depend on scheduling. One thread writes in place.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Path table columns. */
enum { P_V, P_XOFF, P_OOFF, P_OSTRIDE, P_WOFF, P_ODD, P_NZ0, P_NZ1, P_DI, P_DO, P_U, P_COLS };

#define DEFINE_ROWS(T, SUFFIX)                                                          \
  static void forward_rows_##SUFFIX(                                                       \
      int64_t r0, int64_t r1, int64_t directions, const int64_t *src, const int64_t *dst,  \
      const T *w, int64_t w_stride, const T *y, int64_t y_stride, const T *x,              \
      int64_t x_stride, T *out, int64_t out_stride, const int64_t *paths, int64_t n_paths, \
      const int32_t *nnz_ijk, const T *nnz_c, T *scratch) {                                \
    for (int64_t r = r0; r < r1; ++r) {                                                    \
      const T *wr = w + r * w_stride;                                                      \
      const T *yr = y + r * y_stride;                                                      \
      for (int64_t d = 0; d < directions; ++d) {                                           \
        const T *xs = x + src[r * directions + d] * x_stride;                              \
        T *ot = out + dst[r * directions + d] * out_stride;                                \
        for (int64_t p = 0; p < n_paths; ++p) {                                            \
          const int64_t *row = paths + p * P_COLS;                                         \
          const int64_t V = row[P_V], os = row[P_OSTRIDE];                                 \
          const T *wp = wr + row[P_WOFF];                                                  \
          const T *xb = xs + row[P_XOFF];                                                  \
          T *ob = ot + row[P_OOFF];                                                        \
          const T sign = (d == 1 && row[P_ODD]) ? (T)-1 : (T)1;                            \
          for (int64_t i = 0; i < row[P_DI]; ++i) {                                        \
            T *xw = scratch + i * V;                                                       \
            const T *xi = xb + i * V;                                                      \
            _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) xw[v] = xi[v] * wp[v];     \
          }                                                                                \
          for (int64_t n = row[P_NZ0]; n < row[P_NZ1]; ++n) {                              \
            const int32_t *ijk = nnz_ijk + 3 * n;                                          \
            const T coef = sign * nnz_c[n] * yr[ijk[1]];                                   \
            const T *xw = scratch + ijk[0] * V;                                            \
            T *o = ob + ijk[2] * os;                                                       \
            _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) o[v] += coef * xw[v];      \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }                                                                                        \
                                                                                           \
  static void backward_rows_##SUFFIX(                                                      \
      int64_t r0, int64_t r1, int64_t directions, const int64_t *src, const int64_t *dst,  \
      const T *w, int64_t w_stride, const T *y, int64_t y_stride, const T *x,              \
      int64_t x_stride, const T *g, int64_t g_stride, const int64_t *paths,                \
      int64_t n_paths, const int32_t *nnz_ijk, const T *nnz_c, T *grad_w, T *grad_y,       \
      T *grad_x, T *scratch) {                                                             \
    for (int64_t r = r0; r < r1; ++r) {                                                    \
      const T *wr = w + r * w_stride;                                                      \
      const T *yr = y + r * y_stride;                                                      \
      T *gwr = grad_w ? grad_w + r * w_stride : 0;                                         \
      T *gyr = grad_y ? grad_y + r * y_stride : 0;                                         \
      for (int64_t d = 0; d < directions; ++d) {                                           \
        const int64_t s = src[r * directions + d];                                         \
        const T *xs = x + s * x_stride;                                                    \
        const T *gt = g + dst[r * directions + d] * g_stride;                              \
        T *gxs = grad_x ? grad_x + s * x_stride : 0;                                       \
        for (int64_t p = 0; p < n_paths; ++p) {                                            \
          const int64_t *row = paths + p * P_COLS;                                         \
          const int64_t V = row[P_V], os = row[P_OSTRIDE];                                 \
          const T *wp = wr + row[P_WOFF];                                                  \
          const T *xb = xs + row[P_XOFF];                                                  \
          const T *gb = gt + row[P_OOFF];                                                  \
          const T sign = (d == 1 && row[P_ODD]) ? (T)-1 : (T)1;                            \
          /* gw[k][v] = g_k[v] w[v]; z[k][v] = sum of coef x_i[v] (the unweighted message) */ \
          T *gw = scratch, *z = scratch + row[P_DO] * V;                                   \
          for (int64_t k = 0; k < row[P_DO]; ++k) {                                        \
            const T *gk = gb + k * os;                                                     \
            T *gwk = gw + k * V, *zk = z + k * V;                                          \
            _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) {                          \
              gwk[v] = gk[v] * wp[v];                                                      \
              zk[v] = 0;                                                                   \
            }                                                                              \
          }                                                                                \
          for (int64_t n = row[P_NZ0]; n < row[P_NZ1]; ++n) {                              \
            const int32_t *ijk = nnz_ijk + 3 * n;                                          \
            const T c = sign * nnz_c[n];                                                   \
            const T coef = c * yr[ijk[1]];                                                 \
            const T *xi = xb + ijk[0] * V;                                                 \
            const T *gwk = gw + ijk[2] * V;                                                \
            if (gwr) {                                                                     \
              T *zk = z + ijk[2] * V;                                                      \
              _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) zk[v] += coef * xi[v];   \
            }                                                                              \
            if (gyr) {                                                                     \
              T dot = 0;                                                                   \
              _Pragma("omp simd reduction(+ : dot)") for (int64_t v = 0; v < V; ++v)       \
                  dot += xi[v] * gwk[v];                                                   \
              gyr[ijk[1]] += c * dot;                                                      \
            }                                                                              \
            if (gxs) {                                                                     \
              T *gxi = gxs + row[P_XOFF] + ijk[0] * V;                                     \
              _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) gxi[v] += coef * gwk[v]; \
            }                                                                              \
          }                                                                                \
          if (gwr) {                                                                       \
            T *gwp = gwr + row[P_WOFF];                                                    \
            for (int64_t k = 0; k < row[P_DO]; ++k) {                                      \
              const T *gk = gb + k * os, *zk = z + k * V;                                  \
              _Pragma("omp simd") for (int64_t v = 0; v < V; ++v) gwp[v] += zk[v] * gk[v]; \
            }                                                                              \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }                                                                                        \
                                                                                           \

#define DEFINE_DRIVERS(T, SUFFIX)                                                          \
  /* Sum the private node buffers of threads 1.. into the shared one, in thread order. */  \
  static void reduce_##SUFFIX(T *target, T **buffers, int count, int64_t size) {           \
    for (int t = 1; t < count; ++t) {                                                      \
      const T *b = buffers[t];                                                             \
      for (int64_t n = 0; n < size; ++n) target[n] += b[n];                                \
    }                                                                                      \
  }                                                                                        \
                                                                                           \
  int cw_forward_##SUFFIX(int64_t rows, int64_t directions, const int64_t *src,            \
                          const int64_t *dst, const T *w, int64_t w_stride, const T *y,    \
                          int64_t y_stride, const T *x, int64_t x_stride, T *out,          \
                          int64_t out_stride, int64_t out_rows, const int64_t *paths,      \
                          int64_t n_paths, const int32_t *nnz_ijk, const T *nnz_c,         \
                          int64_t scratch_size, int threads) {                             \
    if (threads < 1 || !HAVE_OPENMP) threads = 1;                                         \
    if (rows < 256 * (int64_t)threads) threads = 1;                                        \
    T **buffers = (T **)calloc(threads, sizeof(T *));                                      \
    int failed = buffers == 0;                                                             \
    for (int t = 1; t < threads && !failed; ++t) {                                         \
      buffers[t] = (T *)calloc(out_rows * out_stride, sizeof(T));                          \
      failed = buffers[t] == 0;                                                            \
    }                                                                                      \
    if (!failed) {                                                                         \
      if (threads > 0) buffers[0] = out;                                                   \
      _Pragma("omp parallel num_threads(threads)") {                                       \
        int t = 0, team = 1;                                                               \
        SET_THREAD(t, team);                                                               \
        int64_t r0 = rows * t / team, r1 = rows * (t + 1) / team;                          \
        T *scratch = (T *)malloc(scratch_size * sizeof(T));                                \
        if (scratch) {                                                                     \
          forward_rows_##SUFFIX(r0, r1, directions, src, dst, w, w_stride, y, y_stride, x, \
                                x_stride, buffers[t], out_stride, paths, n_paths, nnz_ijk, \
                                nnz_c, scratch);                                           \
          free(scratch);                                                                   \
        } else {                                                                           \
          _Pragma("omp atomic write") failed = 1;                                          \
        }                                                                                  \
      }                                                                                    \
      reduce_##SUFFIX(out, buffers, threads, out_rows * out_stride);                       \
    }                                                                                      \
    if (buffers)                                                                           \
      for (int t = 1; t < threads; ++t) free(buffers[t]);                                  \
    free(buffers);                                                                         \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  int cw_backward_##SUFFIX(int64_t rows, int64_t directions, const int64_t *src,           \
                           const int64_t *dst, const T *w, int64_t w_stride, const T *y,   \
                           int64_t y_stride, const T *x, int64_t x_stride,                 \
                           int64_t x_rows, const T *g, int64_t g_stride,                   \
                           const int64_t *paths, int64_t n_paths, const int32_t *nnz_ijk,  \
                           const T *nnz_c, T *grad_w, T *grad_y, T *grad_x,                \
                           int64_t scratch_size, int threads) {                            \
    if (threads < 1 || !HAVE_OPENMP) threads = 1;                                         \
    if (rows < 256 * (int64_t)threads) threads = 1;                                        \
    T **buffers = (T **)calloc(threads, sizeof(T *));                                      \
    int failed = buffers == 0;                                                             \
    for (int t = 1; t < threads && grad_x && !failed; ++t) {                               \
      buffers[t] = (T *)calloc(x_rows * x_stride, sizeof(T));                              \
      failed = buffers[t] == 0;                                                            \
    }                                                                                      \
    if (!failed) {                                                                         \
      buffers[0] = grad_x;                                                                 \
      _Pragma("omp parallel num_threads(threads)") {                                       \
        int t = 0, team = 1;                                                               \
        SET_THREAD(t, team);                                                               \
        int64_t r0 = rows * t / team, r1 = rows * (t + 1) / team;                          \
        T *scratch = (T *)malloc(scratch_size * sizeof(T));                                \
        if (scratch) {                                                                     \
          backward_rows_##SUFFIX(r0, r1, directions, src, dst, w, w_stride, y, y_stride,   \
                                 x, x_stride, g, g_stride, paths, n_paths, nnz_ijk, nnz_c, \
                                 grad_w, grad_y, buffers[t], scratch);                     \
          free(scratch);                                                                   \
        } else {                                                                           \
          _Pragma("omp atomic write") failed = 1;                                          \
        }                                                                                  \
      }                                                                                    \
      if (grad_x) reduce_##SUFFIX(grad_x, buffers, threads, x_rows * x_stride);            \
    }                                                                                      \
    if (buffers)                                                                           \
      for (int t = 1; t < threads; ++t) free(buffers[t]);                                  \
    free(buffers);                                                                         \
    return failed;                                                                         \
  }

#ifdef _OPENMP
#define HAVE_OPENMP 1
/* the team may be smaller than asked for: split the rows over the threads there are */
#define SET_THREAD(t, team) ((t) = omp_get_thread_num(), (team) = omp_get_num_threads())
#else
#define HAVE_OPENMP 0
#define SET_THREAD(t, team) ((void)(t), (void)(team))
#endif

/* The double backward (specialised channel-wise sources, which define DOUBLE_ROWS): for cotangents (aw, ay, ax) of the three
 * gradients, grad_g = T(aw,y,x) + T(w,ay,x) + T(w,y,ax) summed at the targets, and the
 * gradients of the backward to w, y, x (see trilinear.py), in one pass over the rows. */
#define DEFINE_DOUBLE_DRIVER(T, SUFFIX)                                                    \
  int cw_double_backward_##SUFFIX(                                                         \
      int64_t rows, int64_t directions, const int64_t *src, const int64_t *dst,            \
      const T *w, const T *y, const T *x, const T *g, const T *aw, const T *ay,            \
      const T *ax, T *grad_g, T *grad_w, T *grad_y, T *grad_x, int64_t g_size,             \
      int64_t x_size, int threads) {                                                       \
    if (threads < 1 || !HAVE_OPENMP) threads = 1;                                         \
    if (rows < 256 * (int64_t)threads) threads = 1;                                        \
    T **gg = (T **)calloc(threads, sizeof(T *)), **gx = (T **)calloc(threads, sizeof(T *)); \
    int failed = gg == 0 || gx == 0;                                                       \
    for (int t = 1; t < threads && !failed; ++t) {                                         \
      if (grad_g) failed |= (gg[t] = (T *)calloc(g_size, sizeof(T))) == 0;                 \
      if (grad_x) failed |= (gx[t] = (T *)calloc(x_size, sizeof(T))) == 0;                 \
    }                                                                                      \
    if (!failed) {                                                                         \
      gg[0] = grad_g;                                                                      \
      gx[0] = grad_x;                                                                      \
      _Pragma("omp parallel num_threads(threads)") {                                       \
        int t = 0, team = 1;                                                               \
        SET_THREAD(t, team);                                                               \
        double_rows_##SUFFIX(rows * t / team, rows * (t + 1) / team, directions, src, dst, \
                             w, y, x, g, aw, ay, ax, gg[t], grad_w, grad_y, gx[t]);        \
      }                                                                                    \
      if (grad_g) reduce_##SUFFIX(grad_g, gg, threads, g_size);                            \
      if (grad_x) reduce_##SUFFIX(grad_x, gx, threads, x_size);                            \
    }                                                                                      \
    for (int t = 1; t < threads; ++t) {                                                    \
      if (gg) free(gg[t]);                                                                 \
      if (gx) free(gx[t]);                                                                 \
    }                                                                                      \
    free(gg);                                                                              \
    free(gx);                                                                              \
    return failed;                                                                         \
  }

/* The row loops: table-driven here; a generated source specialised to one table (constants
 * and loop bounds baked in, see native.py) defines them itself before including this file. */
#ifndef SPECIALIZED
DEFINE_ROWS(float, f32)
DEFINE_ROWS(double, f64)
#endif
DEFINE_DRIVERS(float, f32)
DEFINE_DRIVERS(double, f64)
#ifdef DOUBLE_ROWS
DEFINE_DOUBLE_DRIVER(float, f32)
DEFINE_DOUBLE_DRIVER(double, f64)
#endif
