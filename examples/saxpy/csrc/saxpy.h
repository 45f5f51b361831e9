/* Plain C ABI of libsaxpy_<backend>.so (loaded from Python with ctypes; no CPython API). */
#ifndef SAXPY_H
#define SAXPY_H

#include <stddef.h>

#define SAXPY_API __attribute__((visibility("default")))

/* Return codes. On failure a NUL-terminated message (at most errlen bytes) is
 * written to err. */
#define SAXPY_OK 0
#define SAXPY_ERR_NO_DEVICE 1 /* GPU runtime/driver or device unavailable */
#define SAXPY_ERR_RUNTIME 2   /* a CUDA or cuBLAS call failed after init */

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = a * x[i] + y[i] for i < n. */
SAXPY_API int saxpy_saxpy(float a, const float *x, float *y, size_t n, char *err,
                          size_t errlen);

/* *out = sum of x[i] * y[i] for i < n. */
SAXPY_API int saxpy_dot(const float *x, const float *y, size_t n, float *out,
                        char *err, size_t errlen);

/* c = a @ b for row-major a (m x k), b (k x n), c (m x n). */
SAXPY_API int saxpy_sgemm(size_t m, size_t n, size_t k, const float *a,
                          const float *b, float *c, char *err, size_t errlen);

/* The backend this library was compiled for: "cpu" or "cuda". */
SAXPY_API const char *saxpy_backend(void);

#ifdef __cplusplus
}
#endif

#endif /* SAXPY_H */
