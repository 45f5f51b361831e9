# Type stub for the module CMake generates from cmake/_build_info.py.in.
BACKEND: str
CPU_LEVEL: str
CUDA_ARCHITECTURES: list[str]
HIP_TARGETS: list[str]
CUDA_RUNTIME: str
CUDA_MAJOR: str
COMPILER: str
VERSION: str
