// Vector lanes shared by the mixture's kernels (gaussian_mixture.cc, mixture_full.cc). Not a
// public interface. The vector types cross only always-inline functions, so their ABI never
// matters (the library builds with -Wno-psabi); include this only from the library's sources.
#pragma once

#include <cstring>

namespace curation::selection::internal {

// Sums over dimensions use independent partial sums in kLanes lanes, combined in a fixed
// order. The lanes are a GCC/Clang vector type, which each target clone lowers to its own
// registers (one AVX-512, two AVX2 or four SSE2 registers per vector) with the same per-lane
// arithmetic, so every clone rounds alike and results do not depend on which one the CPU
// picked.
constexpr int kLanes = 8;
typedef double DoubleLanes __attribute__((vector_size(kLanes * sizeof(double))));
typedef float FloatLanes __attribute__((vector_size(kLanes * sizeof(float))));

#define CURATION_INLINE [[gnu::always_inline]] inline

// The hot loops get AVX-512 and AVX2 clones chosen at load time; the baseline clone keeps the
// binary portable. None uses FMA (the library is built with -ffp-contract=off), so all round
// alike.
// Not under ThreadSanitizer: target_clones makes an ifunc resolver, which the dynamic loader
// runs during relocation, before the TSan runtime is initialised; the resolver is
// instrumented like any other function and crashes the loader. The baseline clone is used.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CURATION_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CURATION_HOT
#endif

// memcpy keeps the loads free of alignment and aliasing assumptions; it compiles to plain
// unaligned vector loads.
CURATION_INLINE DoubleLanes Load(const double* p) {
  DoubleLanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

CURATION_INLINE DoubleLanes LoadWidened(const float* p) {
  FloatLanes v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, DoubleLanes);
}

CURATION_INLINE void Store(double* p, DoubleLanes v) { std::memcpy(p, &v, sizeof v); }

CURATION_INLINE double CombineLanes(DoubleLanes a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

}  // namespace curation::selection::internal
