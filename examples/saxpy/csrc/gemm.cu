// c = a @ b through cuBLAS (cublasSgemm), for row-major matrices.
#include "cuda_common.h"
#include "saxpy.h"

extern "C" int saxpy_sgemm(size_t m, size_t n, size_t k, const float *a,
                           const float *b, float *c, char *err, size_t errlen) {
  int rc = saxpy_require_device(err, errlen);
  if (rc != SAXPY_OK || m == 0 || n == 0) {
    return rc;
  }
  float *da = NULL, *db = NULL, *dc = NULL;
  cublasHandle_t handle = NULL;
  cublasStatus_t s;
  cudaError_t e;
  const float one = 1.0f, zero = 0.0f;
  if ((s = cublasCreate(&handle)) != CUBLAS_STATUS_SUCCESS) {
    rc = saxpy_cublas_fail(s, "cublasCreate", err, errlen);
    goto done;
  }
  if ((e = saxpy_to_device(&da, a, m * k)) != cudaSuccess ||
      (e = saxpy_to_device(&db, b, k * n)) != cudaSuccess ||
      (e = cudaMalloc((void **)&dc, m * n * sizeof(float))) != cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to device", err, errlen);
    goto done;
  }
  // cuBLAS is column-major: a row-major (m x n) c is a column-major (n x m) c^T,
  // and c^T = b^T a^T, so pass b first.
  s = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, db,
                  (int)n, da, (int)k, &zero, dc, (int)n);
  if (s != CUBLAS_STATUS_SUCCESS) {
    rc = saxpy_cublas_fail(s, "cublasSgemm", err, errlen);
    goto done;
  }
  if ((e = cudaMemcpy(c, dc, m * n * sizeof(float), cudaMemcpyDeviceToHost)) !=
      cudaSuccess) {
    rc = saxpy_cuda_fail(e, "copy to host", err, errlen);
  }
done:
  if (handle != NULL) {
    cublasDestroy(handle);
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  return rc;
}
