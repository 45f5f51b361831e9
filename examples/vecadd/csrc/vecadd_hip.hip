#include <hip/hip_runtime.h>
#include <stdio.h>

#include "vecadd.h"

__global__ void vecadd_kernel(const double *a, const double *b, double *out,
                              size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = a[i] + b[i];
  }
}

static int fail(hipError_t e, const char *what, char *err, size_t errlen) {
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s: %s (%s)", what, hipGetErrorString(e),
             hipGetErrorName(e));
  }
  return VECADD_ERR_RUNTIME;
}

extern "C" int vecadd_add(const double *a, const double *b, double *out,
                          size_t n, char *err, size_t errlen) {
  int count = 0;
  hipError_t e = hipGetDeviceCount(&count);
  if (e != hipSuccess || count == 0) {
    if (err != NULL && errlen > 0) {
      snprintf(err, errlen, "%s (%s)",
               e != hipSuccess ? hipGetErrorString(e) : "no ROCm devices",
               e != hipSuccess ? hipGetErrorName(e) : "count == 0");
    }
    return VECADD_ERR_NO_DEVICE;
  }
  if (n == 0) {
    return VECADD_OK;
  }
  const size_t bytes = n * sizeof(double);
  double *da = NULL, *db = NULL, *dout = NULL;
  int rc = VECADD_OK;
  if ((e = hipMalloc((void **)&da, bytes)) != hipSuccess ||
      (e = hipMalloc((void **)&db, bytes)) != hipSuccess ||
      (e = hipMalloc((void **)&dout, bytes)) != hipSuccess) {
    rc = fail(e, "hipMalloc", err, errlen);
    goto done;
  }
  if ((e = hipMemcpy(da, a, bytes, hipMemcpyHostToDevice)) != hipSuccess ||
      (e = hipMemcpy(db, b, bytes, hipMemcpyHostToDevice)) != hipSuccess) {
    rc = fail(e, "hipMemcpy to device", err, errlen);
    goto done;
  }
  {
    const unsigned threads = 256;
    const unsigned blocks = (unsigned)((n + threads - 1) / threads);
    vecadd_kernel<<<blocks, threads>>>(da, db, dout, n);
  }
  if ((e = hipGetLastError()) != hipSuccess) {
    rc = fail(e, "kernel launch", err, errlen);
    goto done;
  }
  if ((e = hipMemcpy(out, dout, bytes, hipMemcpyDeviceToHost)) !=
      hipSuccess) {
    rc = fail(e, "hipMemcpy to host", err, errlen);
    goto done;
  }
done:
  hipFree(da);
  hipFree(db);
  hipFree(dout);
  return rc;
}

extern "C" const char *vecadd_backend(void) { return "rocm"; }
