# Type stub for the module CMake generates from cmake/_build_info.py.in.
BACKEND: str
CPU_LEVEL: str
LIBRARY: str
CUDA_ARCHITECTURES: list[str]
CUDA_MAJOR: str
COMPILER: str
VERSION: str
