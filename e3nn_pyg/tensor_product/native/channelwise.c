/* The channel-wise tensor-product convolution as one fused loop per edge (see the native package).
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
  /* Everything one call of the row loops reads and writes (unused fields stay 0). */      \
  typedef struct {                                                                         \
    int64_t directions, w_stride, y_stride, x_stride, g_stride, n_paths, scratch_size;     \
    const int64_t *src, *dst, *paths;                                                      \
    const int32_t *nnz_ijk;                                                                \
    const T *w, *y, *x, *g, *aw, *ay, *ax, *nnz_c;                                         \
    T *grad_w, *grad_y;                                                                    \
  } job_##SUFFIX;                                                                          \
  typedef void (*rows_##SUFFIX)(const job_##SUFFIX *, int64_t, int64_t, T *, T *, T *);    \
                                                                                           \
  /* Rows [0, rows) split over the threads. `a` and `b` (either may be 0) are node sums     \
   * of a_size and b_size values: thread 0 adds into them in place, the others into        \
   * private buffers added afterwards in thread order (results independent of the          \
   * schedule). Returns 1 if a buffer could not be allocated. */                           \
  static int run_##SUFFIX(rows_##SUFFIX loop, const job_##SUFFIX *job, int64_t rows,       \
                          int threads, T *a, int64_t a_size, T *b, int64_t b_size) {       \
    if (threads < 1 || !HAVE_OPENMP) threads = 1;                                         \
    if (rows < 256 * (int64_t)threads) threads = 1;                                        \
    T **as = (T **)calloc(threads, sizeof(T *)), **bs = (T **)calloc(threads, sizeof(T *)); \
    int failed = as == 0 || bs == 0;                                                       \
    for (int t = 1; t < threads && !failed; ++t) {                                         \
      if (a) failed |= (as[t] = (T *)calloc(a_size, sizeof(T))) == 0;                      \
      if (b) failed |= (bs[t] = (T *)calloc(b_size, sizeof(T))) == 0;                      \
    }                                                                                      \
    if (!failed) {                                                                         \
      as[0] = a;                                                                           \
      bs[0] = b;                                                                           \
      _Pragma("omp parallel num_threads(threads)") {                                       \
        int t = 0, team = 1;                                                               \
        SET_THREAD(t, team);                                                               \
        T *scratch = (T *)malloc((job->scratch_size + 1) * sizeof(T));                     \
        if (scratch) {                                                                     \
          loop(job, rows * t / team, rows * (t + 1) / team, as[t], bs[t], scratch);        \
          free(scratch);                                                                   \
        } else {                                                                           \
          _Pragma("omp atomic write") failed = 1;                                          \
        }                                                                                  \
      }                                                                                    \
      for (int t = 1; t < threads; ++t)                                                    \
        for (int64_t n = 0; a && n < a_size; ++n) a[n] += as[t][n];                        \
      for (int t = 1; t < threads; ++t)                                                    \
        for (int64_t n = 0; b && n < b_size; ++n) b[n] += bs[t][n];                        \
    }                                                                                      \
    for (int t = 1; t < threads; ++t) {                                                    \
      if (as) free(as[t]);                                                                 \
      if (bs) free(bs[t]);                                                                 \
    }                                                                                      \
    free(as);                                                                              \
    free(bs);                                                                              \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  static void forward_job_##SUFFIX(const job_##SUFFIX *j, int64_t r0, int64_t r1, T *out,  \
                                   T *unused, T *scratch) {                                \
    (void)unused;                                                                          \
    forward_rows_##SUFFIX(r0, r1, j->directions, j->src, j->dst, j->w, j->w_stride, j->y,  \
                          j->y_stride, j->x, j->x_stride, out, j->g_stride, j->paths,      \
                          j->n_paths, j->nnz_ijk, j->nnz_c, scratch);                      \
  }                                                                                        \
                                                                                           \
  static void backward_job_##SUFFIX(const job_##SUFFIX *j, int64_t r0, int64_t r1,         \
                                    T *unused, T *grad_x, T *scratch) {                    \
    (void)unused;                                                                          \
    backward_rows_##SUFFIX(r0, r1, j->directions, j->src, j->dst, j->w, j->w_stride, j->y, \
                           j->y_stride, j->x, j->x_stride, j->g, j->g_stride, j->paths,    \
                           j->n_paths, j->nnz_ijk, j->nnz_c, j->grad_w, j->grad_y, grad_x, \
                           scratch);                                                       \
  }                                                                                        \
                                                                                           \
  int cw_forward_##SUFFIX(int64_t rows, int64_t directions, const int64_t *src,            \
                          const int64_t *dst, const T *w, int64_t w_stride, const T *y,    \
                          int64_t y_stride, const T *x, int64_t x_stride, T *out,          \
                          int64_t out_stride, int64_t out_rows, const int64_t *paths,      \
                          int64_t n_paths, const int32_t *nnz_ijk, const T *nnz_c,         \
                          int64_t scratch_size, int threads) {                             \
    job_##SUFFIX job = {0};                                                                \
    job.directions = directions, job.src = src, job.dst = dst, job.w = w, job.y = y;       \
    job.x = x, job.w_stride = w_stride, job.y_stride = y_stride, job.x_stride = x_stride;  \
    job.g_stride = out_stride, job.paths = paths, job.n_paths = n_paths;                   \
    job.nnz_ijk = nnz_ijk, job.nnz_c = nnz_c, job.scratch_size = scratch_size;             \
    return run_##SUFFIX(forward_job_##SUFFIX, &job, rows, threads, out,                    \
                        out_rows * out_stride, 0, 0);                                      \
  }                                                                                        \
                                                                                           \
  int cw_backward_##SUFFIX(int64_t rows, int64_t directions, const int64_t *src,           \
                           const int64_t *dst, const T *w, int64_t w_stride, const T *y,   \
                           int64_t y_stride, const T *x, int64_t x_stride,                 \
                           int64_t x_rows, const T *g, int64_t g_stride,                   \
                           const int64_t *paths, int64_t n_paths, const int32_t *nnz_ijk,  \
                           const T *nnz_c, T *grad_w, T *grad_y, T *grad_x,                \
                           int64_t scratch_size, int threads) {                            \
    job_##SUFFIX job = {0};                                                                \
    job.directions = directions, job.src = src, job.dst = dst, job.w = w, job.y = y;       \
    job.x = x, job.g = g, job.w_stride = w_stride, job.y_stride = y_stride;                \
    job.x_stride = x_stride, job.g_stride = g_stride, job.paths = paths;                   \
    job.n_paths = n_paths, job.nnz_ijk = nnz_ijk, job.nnz_c = nnz_c;                       \
    job.grad_w = grad_w, job.grad_y = grad_y, job.scratch_size = scratch_size;             \
    return run_##SUFFIX(backward_job_##SUFFIX, &job, rows, threads, 0, 0, grad_x,          \
                        x_rows * x_stride);                                                \
  }

#ifdef _OPENMP
#define HAVE_OPENMP 1
/* the team may be smaller than asked for: split the rows over the threads there are */
#define SET_THREAD(t, team) ((t) = omp_get_thread_num(), (team) = omp_get_num_threads())
#else
#define HAVE_OPENMP 0
#define SET_THREAD(t, team) ((void)(t), (void)(team))
#endif

/* The double backward (specialised channel-wise sources, which define DOUBLE_ROWS): for
 * cotangents (aw, ay, ax) of the three gradients, grad_g = T(aw,y,x) + T(w,ay,x) +
 * T(w,y,ax) summed at the targets, and the gradients of the backward to w, y, x (see
 * trilinear.py), in one pass over the rows. */
#define DEFINE_DOUBLE_DRIVER(T, SUFFIX)                                                    \
  static void double_job_##SUFFIX(const job_##SUFFIX *j, int64_t r0, int64_t r1,           \
                                  T *grad_g, T *grad_x, T *scratch) {                      \
    (void)scratch;                                                                         \
    double_rows_##SUFFIX(r0, r1, j->directions, j->src, j->dst, j->w, j->y, j->x, j->g,    \
                         j->aw, j->ay, j->ax, grad_g, j->grad_w, j->grad_y, grad_x);       \
  }                                                                                        \
                                                                                           \
  int cw_double_backward_##SUFFIX(                                                         \
      int64_t rows, int64_t directions, const int64_t *src, const int64_t *dst,            \
      const T *w, const T *y, const T *x, const T *g, const T *aw, const T *ay,            \
      const T *ax, T *grad_g, T *grad_w, T *grad_y, T *grad_x, int64_t g_size,             \
      int64_t x_size, int threads) {                                                       \
    job_##SUFFIX job = {0};                                                                \
    job.directions = directions, job.src = src, job.dst = dst, job.w = w, job.y = y;       \
    job.x = x, job.g = g, job.aw = aw, job.ay = ay, job.ax = ax;                           \
    job.grad_w = grad_w, job.grad_y = grad_y;                                              \
    return run_##SUFFIX(double_job_##SUFFIX, &job, rows, threads, grad_g, g_size, grad_x,  \
                        x_size);                                                           \
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
