#include <cuda_runtime.h>
#include <stdio.h>

#include "vecadd.h"

__global__ void vecadd_kernel(const double *a, const double *b, double *out,
                              size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = a[i] + b[i];
  }
}

static int fail(cudaError_t e, const char *what, char *err, size_t errlen) {
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e),
             cudaGetErrorName(e));
  }
  return VECADD_ERR_RUNTIME;
}

extern "C" int vecadd_add(const double *a, const double *b, double *out,
                          size_t n, char *err, size_t errlen) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (err != NULL && errlen > 0) {
      snprintf(err, errlen, "%s (%s)",
               e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA devices",
               e != cudaSuccess ? cudaGetErrorName(e) : "count == 0");
    }
    return VECADD_ERR_NO_DEVICE;
  }
  if (n == 0) {
    return VECADD_OK;
  }
  const size_t bytes = n * sizeof(double);
  double *da = NULL, *db = NULL, *dout = NULL;
  int rc = VECADD_OK;
  if ((e = cudaMalloc((void **)&da, bytes)) != cudaSuccess ||
      (e = cudaMalloc((void **)&db, bytes)) != cudaSuccess ||
      (e = cudaMalloc((void **)&dout, bytes)) != cudaSuccess) {
    rc = fail(e, "cudaMalloc", err, errlen);
    goto done;
  }
  if ((e = cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice)) != cudaSuccess ||
      (e = cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    rc = fail(e, "cudaMemcpy to device", err, errlen);
    goto done;
  }
  {
    const unsigned threads = 256;
    const unsigned blocks = (unsigned)((n + threads - 1) / threads);
    vecadd_kernel<<<blocks, threads>>>(da, db, dout, n);
  }
  if ((e = cudaGetLastError()) != cudaSuccess) {
    rc = fail(e, "kernel launch", err, errlen);
    goto done;
  }
  if ((e = cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost)) !=
      cudaSuccess) {
    rc = fail(e, "cudaMemcpy to host", err, errlen);
    goto done;
  }
done:
  cudaFree(da);
  cudaFree(db);
  cudaFree(dout);
  return rc;
}

extern "C" const char *vecadd_backend(void) { return "cuda"; }
