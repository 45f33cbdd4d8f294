// Dot products and distances with a fixed summation order.
//
// A plain `for` loop accumulating into one float is not vectorised without -ffast-math, and
// letting the compiler reassociate would make results depend on the SIMD width. These kernels
// keep a fixed number of independent partial sums (one per lane, whatever the CPU's vector
// width) and combine them in a fixed tree, so they vectorise under -O3 and still return
// bit-identical results on every x86-64 CPU (the selection library builds with
// -ffp-contract=off, so no FMA contraction changes the rounding either).
#pragma once

#include <omp.h>

#include <cstdint>

// Hot loops calling these kernels get AVX-512 and AVX2 clones picked at load time (the
// baseline x86-64 target has only SSE2); the kernels are always inlined so each clone compiles
// them for its own registers. The lanes' arithmetic is the same in every clone.
// Not under ThreadSanitizer: target_clones makes an ifunc resolver, which the dynamic loader
// runs during relocation, before the TSan runtime is initialised; the resolver is
// instrumented like any other function and crashes the loader. The baseline clone is used.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CURATION_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CURATION_KERNEL_CLONES
#endif

namespace curation::selection::kernels {

// sum_i a[i] * b[i], accumulated in float over 16 lanes.
[[gnu::always_inline]] inline float DotF32(const float* a, const float* b, int64_t d) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    for (int l = 0; l < 16; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < d; ++i, ++l) acc[l] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// sum_i (a[i] - b[i])^2, accumulated in float over 16 lanes.
[[gnu::always_inline]] inline float SquaredDistanceF32(const float* a, const float* b, int64_t d) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    for (int l = 0; l < 16; ++l) {
      const float t = a[i + l] - b[i + l];
      acc[l] += t * t;
    }
  }
  for (int l = 0; i < d; ++i, ++l) {
    const float t = a[i] - b[i];
    acc[l] += t * t;
  }
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// SquaredDistanceF32(a[r], b, d) for r < 4, each bit-identical to it: four independent
// chains of additions instead of one, so about four times the throughput where the loop is
// bound by the latency of its additions (rows in cache, or streamed).
[[gnu::always_inline]] inline void SquaredDistance4F32(const float* const a[4], const float* b,
                                                       int64_t d, float out[4]) {
  float acc0[16] = {}, acc1[16] = {}, acc2[16] = {}, acc3[16] = {};
  const float* a0 = a[0];
  const float* a1 = a[1];
  const float* a2 = a[2];
  const float* a3 = a[3];
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    for (int l = 0; l < 16; ++l) {
      const float t0 = a0[i + l] - b[i + l];
      const float t1 = a1[i + l] - b[i + l];
      const float t2 = a2[i + l] - b[i + l];
      const float t3 = a3[i + l] - b[i + l];
      acc0[l] += t0 * t0;
      acc1[l] += t1 * t1;
      acc2[l] += t2 * t2;
      acc3[l] += t3 * t3;
    }
  }
  for (int l = 0; i < d; ++i, ++l) {
    const float t0 = a0[i] - b[i];
    const float t1 = a1[i] - b[i];
    const float t2 = a2[i] - b[i];
    const float t3 = a3[i] - b[i];
    acc0[l] += t0 * t0;
    acc1[l] += t1 * t1;
    acc2[l] += t2 * t2;
    acc3[l] += t3 * t3;
  }
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) {
      acc0[l] += acc0[l + w];
      acc1[l] += acc1[l + w];
      acc2[l] += acc2[l + w];
      acc3[l] += acc3[l + w];
    }
  }
  out[0] = acc0[0];
  out[1] = acc1[0];
  out[2] = acc2[0];
  out[3] = acc3[0];
}

// sum_i a[i] * b[i], accumulated in double over 8 lanes: for similarities that are stored and
// compared (graph edges), where float's 1e-6 relative error would reorder near ties.
[[gnu::always_inline]] inline double DotF64(const float* a, const float* b, int64_t d) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(a[i + l]) * b[i + l];
  }
  for (int l = 0; i < d; ++i, ++l) acc[l] += static_cast<double>(a[i]) * b[i];
  for (int w = 4; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// Below this many input floats, a method runs its OpenMP regions (its own and FAISS's) on one
// thread: thread start-up and barriers then cost more than the work, badly so on a shared,
// oversubscribed machine.
inline constexpr int64_t kSerialBelowFloats = int64_t{1} << 22;

// Makes the OpenMP regions started by this thread in the enclosing scope serial when `serial`.
// Only the calling thread's setting changes, so selections running concurrently on other
// threads keep theirs.
class SerialOpenMpScope {
 public:
  explicit SerialOpenMpScope(bool serial) : serial_(serial), previous_(omp_get_max_threads()) {
    if (serial_) omp_set_num_threads(1);
  }
  ~SerialOpenMpScope() {
    if (serial_) omp_set_num_threads(previous_);
  }
  SerialOpenMpScope(const SerialOpenMpScope&) = delete;
  SerialOpenMpScope& operator=(const SerialOpenMpScope&) = delete;

 private:
  bool serial_;
  int previous_;
};

}  // namespace curation::selection::kernels
