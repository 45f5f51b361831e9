// dot(x, y): elementwise products reduced per block in shared memory, then on the host.
#include <stdlib.h>

#include "cuda_common.h"
#include "saxpy.h"

#define REDUCE_THREADS 256

__global__ void dot_partial_kernel(const float *x, const float *y, size_t n,
                                   float *partial) {
  __shared__ float cache[REDUCE_THREADS];
  float sum = 0.0f;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    sum += x[i] * y[i];
  }
  cache[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      cache[threadIdx.x] += cache[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = cache[0];
  }
}

extern "C" int saxpy_dot(const float *x, const float *y, size_t n, float *out,
                         char *err, size_t errlen) {
  *out = 0.0f;
  int rc = saxpy_require_device(err, errlen);
  if (rc != SAXPY_OK || n == 0) {
    return rc;
  }
  size_t blocks = (n + REDUCE_THREADS - 1) / REDUCE_THREADS;
  if (blocks > 1024) {
    blocks = 1024;
  }
  float *dx = NULL, *dy = NULL, *dpartial = NULL;
  float *partial = (float *)malloc(blocks * sizeof(float));
  cudaError_t e;
  if (partial == NULL) {
    rc = saxpy_cuda_fail(cudaErrorMemoryAllocation, "host allocation", err, errlen);
    goto done;
  }
  if ((e = saxpy_to_device(&dx, x, n)) != cudaSuccess ||
      (e = saxpy_to_device(&dy, y, n)) != cudaSuccess ||
      (e = cudaMalloc((void **)&dpartial, blocks * sizeof(float))) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to device", err, errlen);
    goto done;
  }
  dot_partial_kernel<<<(unsigned)blocks, REDUCE_THREADS>>>(dx, dy, n, dpartial);
  if ((e = cudaGetLastError()) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "reduction kernel launch", err, errlen);
    goto done;
  }
  if ((e = cudaMemcpy(partial, dpartial, blocks * sizeof(float),
                      cudaMemcpyDeviceToHost)) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to host", err, errlen);
    goto done;
  }
  for (size_t b = 0; b < blocks; ++b) {
    *out += partial[b];
  }
done:
  free(partial);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dpartial);
  return rc;
}
