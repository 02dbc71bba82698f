// Fused float32 CPU kernels for latte-ms, called through mindspore.ops.Custom(func_type="aot").
//
// MindSpore 2.10's CPU kernels for tanh-GELU, LayerNorm and long chains of elementwise ops (the AdamW update)
// are several times slower than torch's fused ones (see README, Performance). Each function here computes the
// same float32 math in one pass over memory. Built by latte/kernels/native.py with
//   g++ -O3 -march=native -ffp-contract=off -fno-math-errno -fno-trapping-math -shared -fPIC
// -ffp-contract=off keeps every multiply and add rounded separately, as the unfused reference computes them;
// the other two flags change no result (errno and FP-exception semantics only) but let loops vectorize.
//
// Every entry point has MindSpore's AOT signature:
//   int f(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// params holds the inputs then the outputs; a non-zero return makes MindSpore raise.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// Threads a kernel splits its work over. MindSpore's CPU runtime runs the independent kernels of a transformer's
// graph at the same time on its own threads, so on a 2-core machine a transformer kernel that split itself only
// competed with them: with one thread each, the demo-shape train step of benchmark.py ran ~10% and the Latte-S/2
// 16-frame forward ~12% faster, the 16-frame train step and whole demo runs as fast (README, Performance). The
// VAE runs one convolution after another, and its GroupNorm keeps every core (on one thread its encode ran ~5%
// slower).
// $LATTE_KERNEL_THREADS (a whole number >= 1, checked by native.py) sets one count for every kernel.
int threads_from_env(int fallback) {
  const char *text = std::getenv("LATTE_KERNEL_THREADS");
  const int n = text ? std::atoi(text) : 0;
  return n >= 1 ? n : fallback;
}

int kernel_threads() {
  static const int n = threads_from_env(1);
  return n;
}

int all_core_threads() {
  static const int n = threads_from_env(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

// Runs body(begin, end) over [0, n) split into contiguous ranges, one per thread (at most max_threads). Plain
// threads, not OpenMP: OpenMP workers spin after a parallel region and would steal the cores MindSpore's own
// thread pool needs for the next kernel.
template <typename Body>
void parallel_for(int64_t n, int64_t min_chunk, Body body, int max_threads = kernel_threads()) {
  int threads = static_cast<int>(std::min<int64_t>(max_threads, std::max<int64_t>(1, n / min_chunk)));
  if (threads <= 1) {
    body(0, n);
    return;
  }
  std::vector<std::thread> pool;
  int64_t step = (n + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    int64_t begin = t * step, end = std::min(n, begin + step);
    if (begin < end) pool.emplace_back(body, begin, end);
  }
  body(0, std::min(n, step));
  for (auto &th : pool) th.join();
}

// expf in a form GCC vectorizes (no libm call): exp(x) = 2^k * exp(r), |r| <= ln2/2, degree-6 polynomial on r
// (Cephes coefficients, max relative error ~1.2e-7, under one float ulp of libm's expf in this range).
inline float exp_approx(float x) {
  x = x < -87.3365447504019f ? -87.3365447504019f : x;
  x = x > 88.3762626647949f ? 88.3762626647949f : x;
  // round to nearest by the 1.5 * 2^23 trick (|x log2 e| < 2^22), which vectorizes where nearbyint does not
  float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

constexpr float kGeluA = 0.044715f;
constexpr float kGeluK = 1.5957691216057308f;  // 2 * sqrt(2 / pi): 0.5 * (1 + tanh(z)) = sigmoid(2 z)
constexpr int64_t kElementChunk = 1 << 15;

}  // namespace

namespace {
inline float gelu(float v) {
  float u = kGeluK * (v + kGeluA * v * v * v);
  return v / (1.0f + exp_approx(-u));
}

// d/dx [x s(u)] = s + x s (1 - s) u',  u' = K (1 + 3 a x^2).
inline float gelu_grad(float v) {
  float u = kGeluK * (v + kGeluA * v * v * v);
  float s = 1.0f / (1.0f + exp_approx(-u));
  float du = kGeluK * (1.0f + 3.0f * kGeluA * v * v);
  return s + v * s * (1.0f - s) * du;
}

// Runs body(c0, c1) over column ranges of [0, d), one per thread, for the kernels that also sum a bias gradient
// over all rows: each thread owns its columns' sums and adds rows in order, so the sums do not depend on the
// number of threads. Ranges are multiples of 16 floats (a cache line) so no two threads write one line.
template <typename Body>
void parallel_columns(int64_t d, int64_t rows, Body body) {
  const int64_t lines = (d + 15) / 16;
  parallel_for(lines, std::max<int64_t>(1, kElementChunk / (16 * std::max<int64_t>(rows, 1))),
               [=](int64_t begin, int64_t end) { body(begin * 16, std::min(d, end * 16)); });
}

// Columns [c0, c1) of the biased GELU's backward (LatteGeluBackward).
void gelu_bias_backward_columns(const float *__restrict x, const float *__restrict bias, const float *__restrict dy,
                                float *__restrict dx, float *__restrict dbias, int64_t rows, int64_t d, int64_t c0,
                                int64_t c1) {
  for (int64_t i = c0; i < c1; ++i) dbias[i] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float *__restrict xr = x + r * d;
    const float *__restrict dyr = dy + r * d;
    float *__restrict dxr = dx + r * d;
    for (int64_t i = c0; i < c1; ++i) {
      const float g = dyr[i] * gelu_grad(xr[i] + bias[i]);
      dxr[i] = g;
      dbias[i] += g;
    }
  }
}
}  // namespace

// tanh-GELU: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)).
// Inputs x (..., D) [, bias (D,)]; output y. With a bias, y = GELU(x + bias), x + bias rounded first: the
// MLP's fc1 bias added in the same pass as the activation (the unfused BiasAdd, then GELU).
extern "C" int LatteGeluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void *stream, void *extra) {
  if (nparam != 2 && nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[nparam - 1]);
  if (nparam == 2) {
    parallel_for(numel(ndims[0], shapes[0]), kElementChunk, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) y[i] = gelu(x[i]);
    });
    return 0;
  }
  const float *bias = static_cast<const float *>(params[1]);
  const int64_t d = shapes[0][ndims[0] - 1];
  if (ndims[1] != 1 || shapes[1][0] != d) return 1;
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *__restrict xr = x + r * d;
      float *__restrict yr = y + r * d;
      for (int64_t i = 0; i < d; ++i) yr[i] = gelu(xr[i] + bias[i]);
    }
  });
  return 0;
}

// Inputs x, dy; output dx = dy * GELU'(x). With a bias: inputs x, bias, dy; outputs dx = dy * GELU'(x + bias)
// and dbias (D,) = the sum of dx over all rows (the BiasAdd's gradient), in one pass.
extern "C" int LatteGeluBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam == 3) {
    const float *x = static_cast<const float *>(params[0]);
    const float *dy = static_cast<const float *>(params[1]);
    float *dx = static_cast<float *>(params[2]);
    parallel_for(numel(ndims[0], shapes[0]), kElementChunk, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * gelu_grad(x[i]);
    });
    return 0;
  }
  if (nparam != 5) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  float *dbias = static_cast<float *>(params[4]);
  const int64_t d = shapes[0][ndims[0] - 1];
  if (ndims[1] != 1 || shapes[1][0] != d) return 1;
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_columns(d, rows, [=](int64_t c0, int64_t c1) {
    gelu_bias_backward_columns(x, bias, dy, dx, dbias, rows, d, c0, c1);
  });
  return 0;
}

// LayerNorm over the last axis, no affine: y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (biased var).
namespace {
// Sums in kLanes independent partial sums (a fixed order, so results are deterministic) that the compiler
// turns into vector adds; a single running sum would not vectorize without reassociating float adds.
constexpr int kLanes = 16;

inline float lane_sum(const float *lanes) {
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

inline float row_sum(const float *xr, int64_t d) {
  float lanes[kLanes] = {0.0f};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += xr[i + j];
  for (; i < d; ++i) lanes[0] += xr[i];
  return lane_sum(lanes);
}

inline float row_centered_sq(const float *xr, int64_t d, float m) {
  float lanes[kLanes] = {0.0f};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      float c = xr[i + j] - m;
      lanes[j] += c * c;
    }
  for (; i < d; ++i) {
    float c = xr[i] - m;
    lanes[0] += c * c;
  }
  return lane_sum(lanes);
}

inline void row_moments(const float *xr, int64_t d, float eps, float *mean, float *rstd) {
  const float m = row_sum(xr, d) / static_cast<float>(d);
  *mean = m;
  *rstd = 1.0f / std::sqrt(row_centered_sq(xr, d, m) / static_cast<float>(d) + eps);
}

// LayerNorm backward of one row from its upstream gradient g: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
inline void layer_norm_row_backward(const float *g, const float *xr, float m, float s, int64_t d, float *dxr) {
  float lanes_g[kLanes] = {0.0f}, lanes_g_xhat[kLanes] = {0.0f};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      lanes_g[j] += g[i + j];
      lanes_g_xhat[j] += g[i + j] * ((xr[i + j] - m) * s);
    }
  for (; i < d; ++i) {
    lanes_g[0] += g[i];
    lanes_g_xhat[0] += g[i] * ((xr[i] - m) * s);
  }
  const float a = lane_sum(lanes_g) / static_cast<float>(d);
  const float b = lane_sum(lanes_g_xhat) / static_cast<float>(d);
  for (int64_t k = 0; k < d; ++k) dxr[k] = s * (g[k] - a - ((xr[k] - m) * s) * b);
}
}  // namespace

// Inputs x (..., D), eps (1,); output y (..., D).
extern "C" int LatteLayerNormForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *stream, void *extra) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float eps = *static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t d = shapes[0][ndims[0] - 1];
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * d;
      float *yr = y + r * d;
      float mean, rstd;
      row_moments(xr, d, eps, &mean, &rstd);
      for (int64_t i = 0; i < d; ++i) yr[i] = (xr[i] - mean) * rstd;
    }
  });
  return 0;
}

// dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * rstd; the row moments are recomputed
// from x (a row is a few KiB, still in cache), so the forward keeps nothing but x for the backward.
// Inputs dy, x, eps (1,); output dx.
extern "C" int LatteLayerNormBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                      void *stream, void *extra) {
  if (nparam != 4) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float eps = *static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t d = shapes[0][ndims[0] - 1];
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *dyr = dy + r * d;
      const float *xr = x + r * d;
      float *dxr = dx + r * d;
      float m, s;
      row_moments(xr, d, eps, &m, &s);
      layer_norm_row_backward(dyr, xr, m, s, d, dxr);
    }
  });
  return 0;
}

// adaLN: y = LayerNorm(x) * (1 + scale) + shift, the scale and shift of sample n applied to all its tokens.
// Inputs x (N, T, D), shift (N, D), scale (N, D), eps (1,); output y (N, T, D).
extern "C" int LatteModulatedLayerNormForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                              const char **dtypes, void *stream, void *extra) {
  if (nparam != 5 || ndims[0] != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *shift = static_cast<const float *>(params[1]);
  const float *scale = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  const int64_t tokens = shapes[0][1], d = shapes[0][2];
  const int64_t rows = shapes[0][0] * tokens;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * d;
      const float *sh = shift + (r / tokens) * d;
      const float *sc = scale + (r / tokens) * d;
      float *yr = y + r * d;
      float mean, rstd;
      row_moments(xr, d, eps, &mean, &rstd);
      for (int64_t i = 0; i < d; ++i) yr[i] = ((xr[i] - mean) * rstd) * (1.0f + sc[i]) + sh[i];
    }
  });
  return 0;
}

namespace {
void modulation_grads(const float *__restrict dy, const float *__restrict x, const float *__restrict scale,
                      float *__restrict dshift, float *__restrict dscale, float *__restrict g, int64_t d, float mean,
                      float rstd) {
  for (int64_t i = 0; i < d; ++i) {
    const float xhat = (x[i] - mean) * rstd;
    dshift[i] += dy[i];
    dscale[i] += dy[i] * xhat;
    g[i] = dy[i] * (1.0f + scale[i]);
  }
}
}  // namespace

// Backward of the above. Inputs dy, x, scale, eps; outputs dx (N, T, D), dshift (N, D), dscale (N, D):
//   dshift = sum_t dy,  dscale = sum_t dy * xhat,  dx = LayerNorm backward of dy * (1 + scale).
// Parallel over samples n (each owns its dshift / dscale rows, so no two threads add to one row).
extern "C" int LatteModulatedLayerNormBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                               const char **dtypes, void *stream, void *extra) {
  if (nparam != 7 || ndims[0] != 3) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *scale = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  float *dshift = static_cast<float *>(params[5]);
  float *dscale = static_cast<float *>(params[6]);
  const int64_t n = shapes[0][0], tokens = shapes[0][1], d = shapes[0][2];
  parallel_for(n, 1, [=](int64_t begin, int64_t end) {
    std::vector<float> g(d);
    for (int64_t s = begin; s < end; ++s) {
      const float *sc = scale + s * d;
      float *dsh = dshift + s * d;
      float *dsc = dscale + s * d;
      for (int64_t i = 0; i < d; ++i) dsh[i] = dsc[i] = 0.0f;
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t r = s * tokens + t;
        const float *dyr = dy + r * d;
        const float *xr = x + r * d;
        float *dxr = dx + r * d;
        float m, rs;
        row_moments(xr, d, eps, &m, &rs);
        modulation_grads(dyr, xr, sc, dsh, dsc, g.data(), d, m, rs);
        layer_norm_row_backward(g.data(), xr, m, rs, d, dxr);
      }
    }
  });
  return 0;
}

namespace {
void scaled_softmax_row(const float *__restrict x, float *__restrict y, int64_t d, float scale) {
  float lanes[kLanes];
  for (int j = 0; j < kLanes; ++j) lanes[j] = x[0] * scale;
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j] * scale;
      lanes[j] = v > lanes[j] ? v : lanes[j];
    }
  float top = lanes[0];
  for (int j = 1; j < kLanes; ++j) top = lanes[j] > top ? lanes[j] : top;
  for (; i < d; ++i) top = x[i] * scale > top ? x[i] * scale : top;
  for (int64_t k = 0; k < d; ++k) y[k] = exp_approx(x[k] * scale - top);
  const float inv = 1.0f / row_sum(y, d);
  for (int64_t k = 0; k < d; ++k) y[k] *= inv;
}
}  // namespace

// Attention weights: y = softmax(x * scale) over the last axis, x * scale rounded first as (q k^T) * scale is.
// Inputs x (..., N), scale (1,); output y.
extern "C" int LatteScaledSoftmaxForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                         const char **dtypes, void *stream, void *extra) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float scale = *static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t d = shapes[0][ndims[0] - 1];
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scaled_softmax_row(x + r * d, y + r * d, d, scale);
    }
  });
  return 0;
}

// dx = scale * y * (dy - sum(dy * y)).  Inputs dy, y, scale (1,); output dx.
extern "C" int LatteScaledSoftmaxBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                          const char **dtypes, void *stream, void *extra) {
  if (nparam != 4) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *y = static_cast<const float *>(params[1]);
  const float scale = *static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t d = shapes[0][ndims[0] - 1];
  const int64_t rows = numel(ndims[0], shapes[0]) / d;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *dyr = dy + r * d;
      const float *yr = y + r * d;
      float *dxr = dx + r * d;
      float lanes[kLanes] = {0.0f};
      int64_t i = 0;
      for (; i + kLanes <= d; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lanes[j] += dyr[i + j] * yr[i + j];
      for (; i < d; ++i) lanes[0] += dyr[i] * yr[i];
      const float dot = lane_sum(lanes);
      for (int64_t k = 0; k < d; ++k) dxr[k] = scale * (yr[k] * (dyr[k] - dot));
    }
  });
  return 0;
}

// One parameter's torch.optim.AdamW step (single-tensor path), all float32, in torch's order of operations:
//   p *= 1 - lr * wd;  m += (g - m) * (1 - beta1);  v = v * beta2 + g * g * (1 - beta2)
//   p -= step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps))   (addcdiv)
// hyper (6,) = [lr, beta1, beta2, eps, step_size, bias_correction2_sqrt], wd the parameter's weight decay.
// Written over p, m and v: they are the parameter's and its moments' own buffers (MindSpore hands a Parameter
// input to a CPU kernel as its storage), so no new p', m', v' are allocated and no Assign copies them back (the
// Assigns were ~12% of a small train step). Output done (1,) = 1; the op is marked a memory side effect
// (cells.py), so the graph keeps and orders it although nothing reads that output.
namespace {
void adamw_range(float *__restrict p, float *__restrict m, float *__restrict v, const float *__restrict g,
                 int64_t begin, int64_t end, float decay, float one_minus_beta1, float beta2, float one_minus_beta2,
                 float eps, float step_size, float bc2) {
  for (int64_t i = begin; i < end; ++i) {  // each element is read before the same iteration writes it
    float pi = p[i] * decay;  // decay is exactly 1 where the weight decay is 0
    float gi = g[i];
    float mi = m[i] + (gi - m[i]) * one_minus_beta1;
    float vi = v[i] * beta2 + gi * gi * one_minus_beta2;
    float denom = std::sqrt(vi) / bc2 + eps;
    p[i] = pi - step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}
}  // namespace

// Every parameter's step in one op (one op per parameter compiled ~10% slower: compile time grows with the
// graph's node count). Inputs hyper (6,), weight_decays (n,), then the n parameters, their n first moments, n
// second moments and n gradients; output done (1,) = 1.
extern "C" int LatteAdamWInPlace(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam < 7 || (nparam - 3) % 4 != 0) return 1;
  const int n = (nparam - 3) / 4;
  const float *h = static_cast<const float *>(params[0]);
  const float *wd = static_cast<const float *>(params[1]);
  if (numel(ndims[1], shapes[1]) != n) return 1;
  const float lr = h[0], beta1 = h[1], beta2 = h[2], eps = h[3], step_size = h[4], bc2 = h[5];
  const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
  for (int k = 0; k < n; ++k) {
    float *p = static_cast<float *>(params[2 + k]);
    float *m = static_cast<float *>(params[2 + n + k]);
    float *v = static_cast<float *>(params[2 + 2 * n + k]);
    const float *g = static_cast<const float *>(params[2 + 3 * n + k]);
    const float decay = 1.0f - lr * wd[k];
    parallel_for(numel(ndims[2 + k], shapes[2 + k]), kElementChunk, [=](int64_t begin, int64_t end) {
      adamw_range(p, m, v, g, begin, end, decay, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2);
    });
  }
  *static_cast<float *>(params[nparam - 1]) = 1.0f;
  return 0;
}

// 1 when any of the inputs (float32 tensors, any number, any shapes) holds a NaN or an infinity, else 0: a train
// step's overflow check over all its gradients in one op and one read of each (MindSpore's IsFinite + ReduceAll
// per gradient builds bool copies and reduces them: ~15% of a small train step). Output (1,) float32.
extern "C" int LatteNonFinite(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  if (nparam < 2) return 1;
  uint32_t found = 0;
  for (int k = 0; k + 1 < nparam && !found; ++k) {
    const uint32_t *bits = static_cast<const uint32_t *>(params[k]);
    const int64_t n = numel(ndims[k], shapes[k]);
    for (int64_t i = 0; i < n; ++i) found |= (bits[i] & 0x7f800000u) == 0x7f800000u;  // exponent all ones
  }
  *static_cast<float *>(params[nparam - 1]) = found ? 1.0f : 0.0f;
  return 0;
}

// Gated residual of an adaLN-Zero block: out = x + gate * y, the gate of sample n applied to all its tokens
// (gate * y rounded first, as the unfused x + gate.unsqueeze(1) * y). With a bias (the bias of the Linear that
// made y, added here instead of in its own pass): out = x + gate * (y + bias), y + bias rounded first.
// Inputs x (N, T, D), gate (N, D), y (N, T, D) [, bias (D,)]; output out (N, T, D).
extern "C" int LatteGatedResidualForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                         const char **dtypes, void *stream, void *extra) {
  if ((nparam != 4 && nparam != 5) || ndims[0] != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gate = static_cast<const float *>(params[1]);
  const float *y = static_cast<const float *>(params[2]);
  const float *bias = nparam == 5 ? static_cast<const float *>(params[3]) : nullptr;
  float *out = static_cast<float *>(params[nparam - 1]);
  const int64_t tokens = shapes[0][1], d = shapes[0][2];
  const int64_t rows = shapes[0][0] * tokens;
  if (bias != nullptr && (ndims[3] != 1 || shapes[3][0] != d)) return 1;
  parallel_for(rows, std::max<int64_t>(1, kElementChunk / d), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *__restrict xr = x + r * d;
      const float *__restrict yr = y + r * d;
      const float *__restrict g = gate + (r / tokens) * d;
      float *__restrict o = out + r * d;
      if (bias == nullptr) {
        for (int64_t i = 0; i < d; ++i) o[i] = xr[i] + g[i] * yr[i];
      } else {
        for (int64_t i = 0; i < d; ++i) o[i] = xr[i] + g[i] * (yr[i] + bias[i]);
      }
    }
  });
  return 0;
}

namespace {
// Columns [c0, c1) of the gated residual's backward (below); kBias: with the Linear's bias.
template <bool kBias>
void gated_residual_backward_columns(const float *__restrict dout, const float *__restrict gate,
                                     const float *__restrict y, const float *__restrict bias, float *__restrict dy,
                                     float *__restrict dgate, float *__restrict dbias, int64_t samples,
                                     int64_t tokens, int64_t d, int64_t c0, int64_t c1) {
  if (kBias)
    for (int64_t i = c0; i < c1; ++i) dbias[i] = 0.0f;
  for (int64_t n = 0; n < samples; ++n) {
    const float *__restrict g = gate + n * d;
    float *__restrict dg = dgate + n * d;
    for (int64_t i = c0; i < c1; ++i) dg[i] = 0.0f;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t r = (n * tokens + t) * d;
      const float *__restrict dr = dout + r;
      const float *__restrict yr = y + r;
      float *__restrict dyr = dy + r;
      for (int64_t i = c0; i < c1; ++i) {
        const float v = g[i] * dr[i];
        dyr[i] = v;
        if (kBias) {
          dg[i] += dr[i] * (yr[i] + bias[i]);
          dbias[i] += v;
        } else {
          dg[i] += dr[i] * yr[i];
        }
      }
    }
  }
}
}  // namespace

// Its backward but for dx (= dout, passed through by the cell), one pass: dy = gate * dout,
// dgate[n] = sum_t dout * y (y + bias with a bias) and, with a bias, dbias = sum over all rows of dy.
// Columns are split over the threads (a temporal block has a single sample), each summing its tokens in order.
// Inputs dout (N, T, D), gate (N, D), y (N, T, D) [, bias (D,)]; outputs dy (N, T, D), dgate (N, D) [, dbias (D,)].
extern "C" int LatteGatedResidualBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                          const char **dtypes, void *stream, void *extra) {
  if ((nparam != 5 && nparam != 7) || ndims[0] != 3) return 1;
  const bool has_bias = nparam == 7;
  const float *dout = static_cast<const float *>(params[0]);
  const float *gate = static_cast<const float *>(params[1]);
  const float *y = static_cast<const float *>(params[2]);
  const float *bias = has_bias ? static_cast<const float *>(params[3]) : nullptr;
  float *dy = static_cast<float *>(params[has_bias ? 4 : 3]);
  float *dgate = static_cast<float *>(params[has_bias ? 5 : 4]);
  float *dbias = has_bias ? static_cast<float *>(params[6]) : nullptr;
  const int64_t samples = shapes[0][0], tokens = shapes[0][1], d = shapes[0][2];
  if (has_bias && (ndims[3] != 1 || shapes[3][0] != d)) return 1;
  parallel_columns(d, samples * tokens, [=](int64_t c0, int64_t c1) {
    if (has_bias)
      gated_residual_backward_columns<true>(dout, gate, y, bias, dy, dgate, dbias, samples, tokens, d, c0, c1);
    else
      gated_residual_backward_columns<false>(dout, gate, y, bias, dy, dgate, dbias, samples, tokens, d, c0, c1);
  });
  return 0;
}

// GroupNorm with affine, optionally followed by SiLU: y = act(xhat * gamma[c] + beta[c]), xhat = (x - mean) *
// rstd over each (sample, group) of x (N, C, ...) in NCHW order, where a group's channels are one contiguous
// block of (C / G) * S values (S: the product of the spatial sizes). The VAE's every norm is followed by SiLU
// but the mid-block attention's; fused, the activation costs no extra pass over memory. The group moments are
// summed in double (a group of a 256x256 feature map holds 2^18 values).
namespace {
struct GroupNormConfig {
  float eps;
  int64_t groups;
  bool silu;
};

inline GroupNormConfig group_norm_config(const float *config) {
  return {config[0], static_cast<int64_t>(config[1]), config[2] != 0.0f};
}

inline void group_moments(const float *xr, int64_t d, float eps, float *mean, float *rstd) {
  double lanes[kLanes] = {0.0};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += xr[i + j];
  for (; i < d; ++i) lanes[0] += xr[i];
  double total = 0.0;
  for (int j = 0; j < kLanes; ++j) total += lanes[j];
  const double m = total / static_cast<double>(d);
  double sq[kLanes] = {0.0};
  for (i = 0; i + kLanes <= d; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double c = xr[i + j] - m;
      sq[j] += c * c;
    }
  for (; i < d; ++i) {
    const double c = xr[i] - m;
    sq[0] += c * c;
  }
  double var = 0.0;
  for (int j = 0; j < kLanes; ++j) var += sq[j];
  *mean = static_cast<float>(m);
  *rstd = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(d) + static_cast<double>(eps)));
}

inline float sigmoid(float z) { return 1.0f / (1.0f + exp_approx(-z)); }
}  // namespace

// Inputs x (N, C, ...), gamma (C,), beta (C,), config (3,) = [eps, groups, silu 0|1]; output y like x.
extern "C" int LatteGroupNormForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *stream, void *extra) {
  if (nparam != 5 || ndims[0] < 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const GroupNormConfig cfg = group_norm_config(static_cast<const float *>(params[3]));
  float *y = static_cast<float *>(params[4]);
  const int64_t n = shapes[0][0], c = shapes[0][1];
  if (cfg.groups < 1 || c % cfg.groups) return 2;
  const int64_t spatial = numel(ndims[0], shapes[0]) / (n * c), cpg = c / cfg.groups, d = cpg * spatial;
  parallel_for(n * cfg.groups, 1, [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * d;
      float *yr = y + r * d;
      float mean, rstd;
      group_moments(xr, d, cfg.eps, &mean, &rstd);
      const int64_t c0 = (r % cfg.groups) * cpg;
      for (int64_t k = 0; k < cpg; ++k) {
        const float g = gamma[c0 + k], b = beta[c0 + k];
        const float *xc = xr + k * spatial;
        float *yc = yr + k * spatial;
        if (cfg.silu) {
          for (int64_t i = 0; i < spatial; ++i) {
            const float z = (xc[i] - mean) * rstd * g + b;
            yc[i] = z * sigmoid(z);
          }
        } else {
          for (int64_t i = 0; i < spatial; ++i) yc[i] = (xc[i] - mean) * rstd * g + b;
        }
      }
    }
  }, all_core_threads());
  return 0;
}

// Backward of the above. Inputs dy, x, gamma, beta, config; outputs dx (like x), dgamma (C,), dbeta (C,):
//   dz = dy * silu'(z) (or dy), dbeta = sum dz, dgamma = sum dz * xhat over samples and positions,
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) over the group, g = dz * gamma.
// Parallel over (sample, group) rows; each row's channel sums go to its own slot of a (N, C) buffer, summed over
// the samples in order at the end (deterministic).
extern "C" int LatteGroupNormBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                      void *stream, void *extra) {
  if (nparam != 8 || ndims[1] < 2) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *gamma = static_cast<const float *>(params[2]);
  const float *beta = static_cast<const float *>(params[3]);
  const GroupNormConfig cfg = group_norm_config(static_cast<const float *>(params[4]));
  float *dx = static_cast<float *>(params[5]);
  float *dgamma = static_cast<float *>(params[6]);
  float *dbeta = static_cast<float *>(params[7]);
  const int64_t n = shapes[1][0], c = shapes[1][1];
  if (cfg.groups < 1 || c % cfg.groups) return 2;
  const int64_t spatial = numel(ndims[1], shapes[1]) / (n * c), cpg = c / cfg.groups, d = cpg * spatial;
  std::vector<double> part_gamma(n * c), part_beta(n * c);
  double *pg = part_gamma.data(), *pb = part_beta.data();
  parallel_for(n * cfg.groups, 1, [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = x + r * d;
      const float *dyr = dy + r * d;
      float *dxr = dx + r * d;  // holds g = dz * gamma until the second pass
      float mean, rstd;
      group_moments(xr, d, cfg.eps, &mean, &rstd);
      const int64_t c0 = (r % cfg.groups) * cpg, slot = (r / cfg.groups) * c + c0;
      double sum_g = 0.0, sum_g_xhat = 0.0;
      for (int64_t k = 0; k < cpg; ++k) {
        const float gm = gamma[c0 + k], b = beta[c0 + k];
        const float *xc = xr + k * spatial;
        const float *dyc = dyr + k * spatial;
        float *gc = dxr + k * spatial;
        float lanes_dz[kLanes] = {0.0f}, lanes_dz_xhat[kLanes] = {0.0f};
        auto element = [&](int64_t i, int j) {
          const float xhat = (xc[i] - mean) * rstd;
          float dz = dyc[i];
          if (cfg.silu) {
            const float z = xhat * gm + b;
            const float s = sigmoid(z);
            dz = dz * (s + z * s * (1.0f - s));
          }
          lanes_dz[j] += dz;
          lanes_dz_xhat[j] += dz * xhat;
          gc[i] = dz * gm;
        };
        int64_t i = 0;
        for (; i + kLanes <= spatial; i += kLanes)
          for (int j = 0; j < kLanes; ++j) element(i + j, j);
        for (; i < spatial; ++i) element(i, 0);
        const float sdz = lane_sum(lanes_dz), sdzx = lane_sum(lanes_dz_xhat);
        pb[slot + k] = sdz;
        pg[slot + k] = sdzx;
        sum_g += static_cast<double>(sdz) * gm;
        sum_g_xhat += static_cast<double>(sdzx) * gm;
      }
      const float a = static_cast<float>(sum_g / static_cast<double>(d));
      const float bb = static_cast<float>(sum_g_xhat / static_cast<double>(d));
      for (int64_t i = 0; i < d; ++i) dxr[i] = rstd * (dxr[i] - a - ((xr[i] - mean) * rstd) * bb);
    }
  }, all_core_threads());
  for (int64_t k = 0; k < c; ++k) {
    double sg = 0.0, sb = 0.0;
    for (int64_t s = 0; s < n; ++s) {
      sg += pg[s * c + k];
      sb += pb[s * c + k];
    }
    dgamma[k] = static_cast<float>(sg);
    dbeta[k] = static_cast<float>(sb);
  }
  return 0;
}

// Permute (transpose) of a tensor of 1-, 2-, 4- or 8-byte elements: y = x.transpose(perm).
//
// MindSpore 2.10's CPU Transpose precomputes one 8-byte input offset per element when the graph is compiled and
// keeps that table for as long as the graph lives: 2x the tensor's bytes for every Transpose node, forward and
// backward (~1.2 GiB of the Latte-S/2 16-frame train step). This one walks the output in order and copies runs:
// output axes that are consecutive in the input are merged first, so when the last axis stays last (a head
// transpose keeps Dh last) every run is one memcpy; otherwise the last output axis is gathered with its input
// stride. Nothing is kept between calls. Inputs x (any shape, rank <= 8), perm (rank,) int64; output y.
namespace {

size_t element_size(const char *dtype) {
  const std::string name(dtype);
  if (name == "float32" || name == "int32" || name == "uint32") return 4;
  if (name == "float16" || name == "bfloat16" || name == "int16" || name == "uint16") return 2;
  if (name == "float64" || name == "int64" || name == "uint64" || name == "complex64") return 8;
  if (name == "int8" || name == "uint8" || name == "bool") return 1;
  return 0;
}

template <typename T>
void gather_run(char *dst, const char *src, int64_t count, int64_t stride) {
  T *d = reinterpret_cast<T *>(dst);
  const T *s = reinterpret_cast<const T *>(src);
  for (int64_t i = 0; i < count; ++i) d[i] = s[i * stride];
}

constexpr int kMaxPermuteRank = 8;

// A permutation as runs: the output's axes with their input strides (in elements), size-1 axes dropped and
// input-contiguous neighbours merged; the last of them is one run of `run` elements per outer index.
struct PermutePlan {
  int n = 0;
  int64_t size[kMaxPermuteRank], stride[kMaxPermuteRank];
  int64_t total = 0, run = 1, run_stride = 1, runs = 0;
};

bool plan_permute(int rank, const int64_t *shape, const int64_t *perm, PermutePlan *plan) {
  if (rank > kMaxPermuteRank) return false;
  int64_t in_stride[kMaxPermuteRank];
  int64_t step = 1;
  for (int i = rank - 1; i >= 0; --i) {
    in_stride[i] = step;
    step *= shape[i];
  }
  int n = 0;
  for (int i = 0; i < rank; ++i) {
    const int64_t axis = perm[i];
    if (axis < 0 || axis >= rank) return false;
    if (shape[axis] == 1) continue;
    if (n > 0 && plan->stride[n - 1] == shape[axis] * in_stride[axis]) {
      plan->size[n - 1] *= shape[axis];
      plan->stride[n - 1] = in_stride[axis];
    } else {
      plan->size[n] = shape[axis];
      plan->stride[n] = in_stride[axis];
      ++n;
    }
  }
  plan->n = n;
  plan->total = numel(rank, shape);
  if (n > 0) {
    plan->run = plan->size[n - 1];
    plan->run_stride = plan->stride[n - 1];
  }
  plan->runs = plan->total / plan->run;
  return true;
}

// Copies run r (input element offset `offset`) from src_of(offset) to dst_of(r) for every output run; with a
// float32 `bias` of `bias_len` elements, adds bias[input offset % bias_len] to each element as it is copied (the
// bias of the input's trailing axes: the same single float add as a BiasAdd before the permutation).
template <typename SrcOf, typename DstOf>
void run_permute(const PermutePlan &plan, size_t es, SrcOf src_of, DstOf dst_of, const float *bias,
                 int64_t bias_len) {
  const int64_t run = plan.run, run_stride = plan.run_stride;
  const int outer_rank = plan.n - 1;
  const PermutePlan p = plan;
  parallel_for(plan.runs, std::max<int64_t>(1, kElementChunk / run), [=](int64_t begin, int64_t end) {
    int64_t index[kMaxPermuteRank];
    int64_t offset = 0;  // input element offset of run `r`
    for (int64_t i = outer_rank - 1, rest = begin; i >= 0; --i) {
      index[i] = rest % p.size[i];
      rest /= p.size[i];
      offset += index[i] * p.stride[i];
    }
    for (int64_t r = begin; r < end; ++r) {
      char *dst = dst_of(r);
      const char *src = src_of(offset);
      if (bias != nullptr) {
        float *d = reinterpret_cast<float *>(dst);
        const float *x = reinterpret_cast<const float *>(src);
        const int64_t b0 = offset % bias_len;
        if (run_stride == 1 && b0 + run <= bias_len) {
          for (int64_t i = 0; i < run; ++i) d[i] = x[i] + bias[b0 + i];
        } else {
          for (int64_t i = 0; i < run; ++i) d[i] = x[i * run_stride] + bias[(offset + i * run_stride) % bias_len];
        }
      } else if (run_stride == 1) {
        std::memcpy(dst, src, run * es);
      } else if (es == 4) {
        gather_run<uint32_t>(dst, src, run, run_stride);
      } else if (es == 2) {
        gather_run<uint16_t>(dst, src, run, run_stride);
      } else if (es == 8) {
        gather_run<uint64_t>(dst, src, run, run_stride);
      } else {
        gather_run<uint8_t>(dst, src, run, run_stride);
      }
      for (int i = outer_rank - 1; i >= 0; --i) {  // next outer index (odometer)
        offset += p.stride[i];
        if (++index[i] < p.size[i]) break;
        offset -= p.size[i] * p.stride[i];
        index[i] = 0;
      }
    }
  });
}

// The permutation of x (rank ndims[0], perm an int64 (rank,) input) into `parts` equal outputs: the permuted
// tensor's first axis cut into `parts` blocks, without building the whole permuted tensor. Optionally a float32
// bias over x's trailing elements is added on the way. Inputs x, perm [, bias]; outputs parts tensors.
int split_permute(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int inputs,
                  bool with_bias) {
  const int parts = nparam - inputs;
  const int rank = ndims[0];
  if (parts < 1 || ndims[1] != 1 || shapes[1][0] != rank) return 1;
  const size_t es = element_size(dtypes[0]);
  if (es == 0 || (with_bias && (es != 4 || ndims[2] != 1 || shapes[2][0] <= 0))) return 1;
  PermutePlan plan;
  if (!plan_permute(rank, shapes[0], static_cast<const int64_t *>(params[1]), &plan)) return 1;
  if (plan.total == 0) return 0;
  const int64_t part_elements = plan.total / parts;
  if (plan.total % parts != 0 || part_elements % plan.run != 0) return 1;  // each run inside one output
  const int64_t runs_per_part = part_elements / plan.run;
  const char *x = static_cast<const char *>(params[0]);
  char *const *outs = reinterpret_cast<char *const *>(params + inputs);
  const int64_t run_bytes = plan.run * static_cast<int64_t>(es);
  run_permute(
      plan, es, [=](int64_t offset) { return x + offset * static_cast<int64_t>(es); },
      [=](int64_t r) { return outs[r / runs_per_part] + (r % runs_per_part) * run_bytes; },
      with_bias ? static_cast<const float *>(params[2]) : nullptr, with_bias ? shapes[2][0] : 1);
  return 0;
}

}  // namespace

// Inputs x, perm; output the permuted x, or with nparam - 2 > 1 outputs, the permuted x cut into that many blocks
// along its first axis (attention's q, k, v).
extern "C" int LattePermute(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                            void *stream, void *extra) {
  return split_permute(nparam, params, ndims, shapes, dtypes, 2, false);
}

// Inputs x, perm, bias; as LattePermute of x + bias (bias over x's trailing elements, float32).
extern "C" int LatteSplitPermuteBias(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *stream, void *extra) {
  return split_permute(nparam, params, ndims, shapes, dtypes, 3, true);
}

// The gradient of a split LattePermute: inputs the nparam - 2 blocks (equal shapes), perm (the inverse permutation);
// output the permutation of their concatenation along a new first axis, without building the concatenation.
extern "C" int LatteConcatPermute(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                  void *stream, void *extra) {
  const int parts = nparam - 2;
  if (parts < 1) return 1;
  const int part_rank = ndims[0];
  const int rank = part_rank + 1;
  if (rank > kMaxPermuteRank || ndims[parts] != 1 || shapes[parts][0] != rank) return 1;
  for (int i = 1; i < parts; ++i) {
    if (ndims[i] != part_rank) return 1;
    for (int a = 0; a < part_rank; ++a)
      if (shapes[i][a] != shapes[0][a]) return 1;
  }
  const size_t es = element_size(dtypes[0]);
  if (es == 0) return 1;
  int64_t shape[kMaxPermuteRank];
  shape[0] = parts;
  for (int a = 0; a < part_rank; ++a) shape[a + 1] = shapes[0][a];
  PermutePlan plan;
  if (!plan_permute(rank, shape, static_cast<const int64_t *>(params[parts]), &plan)) return 1;
  if (plan.total == 0) return 0;
  const int64_t chunk = plan.total / parts;  // elements of one block
  if (parts > 1 && plan.run * plan.run_stride > chunk) {  // a run would cross blocks: copy element by element
    if (plan.n >= kMaxPermuteRank) return 1;
    plan.size[plan.n] = 1;
    plan.stride[plan.n] = 1;
    plan.n += 1;
    plan.run = 1;
    plan.run_stride = 1;
    plan.runs = plan.total;
  }
  const char *const *ins = reinterpret_cast<const char *const *>(params);
  char *y = static_cast<char *>(params[parts + 1]);
  const int64_t run_bytes = plan.run * static_cast<int64_t>(es);
  run_permute(
      plan, es, [=](int64_t offset) { return ins[offset / chunk] + (offset % chunk) * static_cast<int64_t>(es); },
      [=](int64_t r) { return y + r * run_bytes; }, nullptr, 1);
  return 0;
}

// The thread counts this library runs with (read once from $LATTE_KERNEL_THREADS): all_cores 0 -> a transformer
// kernel's, 1 -> the VAE GroupNorm's. native.py logs them.
extern "C" int LatteKernelThreads(int all_cores) { return all_cores ? all_core_threads() : kernel_threads(); }
