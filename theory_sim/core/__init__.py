"""Numba kernels only: arrays and scalars in, arrays and a status code out.

No I/O, no printing, no dataclasses here (DEVELOPERS.md, architecture).
"""
