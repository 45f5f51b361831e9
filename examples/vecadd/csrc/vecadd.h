/* Plain C ABI of libvecadd (loaded from Python with ctypes; no CPython API). */
#ifndef VECADD_H
#define VECADD_H

#include <stddef.h>

#define VECADD_API __attribute__((visibility("default")))

/* Return codes of vecadd_add. */
#define VECADD_OK 0
#define VECADD_ERR_NO_DEVICE 1 /* GPU runtime/driver or device unavailable */
#define VECADD_ERR_RUNTIME 2   /* a GPU runtime call failed after init */

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = a[i] + b[i] for i < n.  On failure returns a nonzero code and
 * writes a NUL-terminated message (at most errlen bytes) to err. */
VECADD_API int vecadd_add(const double *a, const double *b, double *out,
                          size_t n, char *err, size_t errlen);

/* The backend this library was compiled for: "cpu", "cuda" or "rocm". */
VECADD_API const char *vecadd_backend(void);

#ifdef __cplusplus
}
#endif

#endif /* VECADD_H */
