/* Shared by the CUDA translation units of libsaxpy_cuda.so (not part of the ABI). */
#ifndef SAXPY_CUDA_COMMON_H
#define SAXPY_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>

/* SAXPY_OK if a CUDA device is usable, else SAXPY_ERR_NO_DEVICE with a message. */
int saxpy_require_device(char *err, size_t errlen);

/* Write "what: <CUDA error>" to err; returns SAXPY_ERR_RUNTIME. */
int saxpy_cuda_fail(cudaError_t e, const char *what, char *err, size_t errlen);

/* Write "what: <cuBLAS status>" to err; returns SAXPY_ERR_RUNTIME. */
int saxpy_cublas_fail(cublasStatus_t s, const char *what, char *err, size_t errlen);

/* Copy n floats to a new device buffer (*dst); cudaSuccess or the failing error. */
cudaError_t saxpy_to_device(float **dst, const float *src, size_t n);

#endif /* SAXPY_CUDA_COMMON_H */
