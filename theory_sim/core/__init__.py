"""Numba kernels only: arrays and scalars in, arrays and a status code out.

No I/O, no printing, no dataclasses here (the layering of the package: kernels at the bottom, see README).

Importing this package compiles nothing; it imports every kernel module with
numba's cache directory pointed at ``_jit.kernel_cache_dir()`` (keyed on the
kernel sources, so stale machine code is never loaded), then restores numba's
global setting for other code in the process.
"""

import importlib as _importlib
import pkgutil as _pkgutil

import numba as _numba

from ._jit import kernel_cache_dir as _kernel_cache_dir

_previous = _numba.config.CACHE_DIR
_numba.config.CACHE_DIR = _kernel_cache_dir()
try:
    for _mod in _pkgutil.iter_modules(__path__):
        if not _mod.name.startswith("__"):
            _importlib.import_module(f"{__name__}.{_mod.name}")
finally:
    _numba.config.CACHE_DIR = _previous
