#include "saxpy.h"

int saxpy_saxpy(float a, const float *x, float *y, size_t n, char *err,
                size_t errlen) {
  (void)err;
  (void)errlen;
  for (size_t i = 0; i < n; ++i) {
    y[i] = a * x[i] + y[i];
  }
  return SAXPY_OK;
}

int saxpy_dot(const float *x, const float *y, size_t n, float *out, char *err,
              size_t errlen) {
  (void)err;
  (void)errlen;
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    sum += x[i] * y[i];
  }
  *out = sum;
  return SAXPY_OK;
}

int saxpy_sgemm(size_t m, size_t n, size_t k, const float *a, const float *b,
                float *c, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (size_t p = 0; p < k; ++p) {
        sum += a[i * k + p] * b[p * n + j];
      }
      c[i * n + j] = sum;
    }
  }
  return SAXPY_OK;
}

const char *saxpy_backend(void) { return "cpu"; }
