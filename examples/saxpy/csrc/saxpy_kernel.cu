// y = a * x + y with a hand-written kernel.
#include "cuda_common.h"
#include "saxpy.h"

__global__ void saxpy_kernel(float a, const float *x, float *y, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    y[i] = a * x[i] + y[i];
  }
}

extern "C" int saxpy_saxpy(float a, const float *x, float *y, size_t n, char *err,
                           size_t errlen) {
  int rc = saxpy_require_device(err, errlen);
  if (rc != SAXPY_OK || n == 0) {
    return rc;
  }
  float *dx = NULL, *dy = NULL;
  cudaError_t e;
  if ((e = saxpy_to_device(&dx, x, n)) != cudaSuccess ||
      (e = saxpy_to_device(&dy, y, n)) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to device", err, errlen);
    goto done;
  }
  {
    const unsigned threads = 256;
    const unsigned blocks = (unsigned)((n + threads - 1) / threads);
    saxpy_kernel<<<blocks, threads>>>(a, dx, dy, n);
  }
  if ((e = cudaGetLastError()) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "saxpy kernel launch", err, errlen);
    goto done;
  }
  if ((e = cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost)) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to host", err, errlen);
  }
done:
  cudaFree(dx);
  cudaFree(dy);
  return rc;
}
