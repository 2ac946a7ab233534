// glibc's libmvec ships AVX2 versions of exp and tanh; <math.h> declares them `declare simd`
// only under -ffast-math. Declaring them here lets `omp simd` loops call 8 at a time (~9x
// faster than scalar calls, accurate to a few ulp) without fast-math's other licences.
#pragma once

#include <cmath>

#if defined(__GLIBC__) && defined(__x86_64__)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
double exp(double) noexcept;
#pragma omp declare simd notinbranch
float tanhf(float) noexcept;
#pragma omp declare simd notinbranch
double tanh(double) noexcept;
}
#endif
