"""One module per engine: numba_cpu (NumPy), cupy_cuda (CuPy), jax_xla (jax).

Each module provides the same functions; the public modules pick one through ``_dispatch``.
"""
