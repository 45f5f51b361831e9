// Device checks and error reporting shared by the CUDA backend's kernels.
#include <stdio.h>

#include "cuda_common.h"
#include "saxpy.h"

int saxpy_require_device(char *err, size_t errlen) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count > 0) {
    return SAXPY_OK;
  }
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s (%s)",
             e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA devices",
             e != cudaSuccess ? cudaGetErrorName(e) : "count == 0");
  }
  return SAXPY_ERR_NO_DEVICE;
}

int saxpy_cuda_fail(cudaError_t e, const char *what, char *err, size_t errlen) {
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e),
             cudaGetErrorName(e));
  }
  return SAXPY_ERR_RUNTIME;
}

int saxpy_cublas_fail(cublasStatus_t s, const char *what, char *err, size_t errlen) {
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s: %s (%s)", what, cublasGetStatusString(s),
             cublasGetStatusName(s));
  }
  return SAXPY_ERR_RUNTIME;
}

cudaError_t saxpy_to_device(float **dst, const float *src, size_t n) {
  *dst = NULL;
  cudaError_t e = cudaMalloc((void **)dst, n * sizeof(float));
  if (e != cudaSuccess) {
    return e;
  }
  return cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice);
}

extern "C" const char *saxpy_backend(void) { return "cuda"; }
