"""The smoke test every saxpy wheel runs (matrix/saxpy.toml's test-command, run by
`wheelforge build` and `wheelforge test` in a fresh venv on the machine the wheel's
label claims): load the native library and call it.

- CPU builds compute, on the emulated CPU of the level they claim.
- The CUDA build on a machine without a GPU must get as far as the library's own "no
  device" answer, with cuBLAS and the CUDA runtime loaded from the nvidia-* wheels it
  depends on: a library that fails to load fails the test.
"""

import os
import sys

import saxpy

backend = saxpy.backend()
overrides = {k: v for k, v in os.environ.items() if "_VARIANT_PROVIDER_FORCE_" in k}
print(f"saxpy {saxpy.__version__} ({backend}), simulated: {overrides or 'no GPU'}")
try:
    y = saxpy.saxpy(2.0, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    d = saxpy.dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
except RuntimeError as err:
    if backend == "cuda" and "device is available" in str(err):
        print(f"loaded and called; no device here, as expected: {err}")
        sys.exit(0)
    raise
assert y == [3.0, 5.0, 7.0] and d == 32.0, (y, d)
print(f"computed saxpy {y}, dot {d}")
