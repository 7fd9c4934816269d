"""Shared test settings: the hypothesis profile and a few fixtures.

Hypothesis profiles (select with ``HYPOTHESIS_PROFILE=<name>``):

* ``ci`` (default): derandomised (the same examples on every run, so a red test is
  reproducible and the suite time is stable), 25 examples, no deadline (numba
  compiles on first call), failing examples printed as a reproduction blob.
* ``explore``: random examples, 200 of them, for hunting bugs locally.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,            # first calls compile numba kernels (seconds)
    "print_blob": True,
    "database": None,            # no .hypothesis/ directory in the work tree
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.differing_executors,
                              HealthCheck.function_scoped_fixture],  # single_thread: no state
}
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("explore", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A numpy generator seeded from the test's node id: fixed per test, different across tests."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def single_thread():
    """Run numba's parallel kernels on one thread for this test (restored afterwards).

    For tests that make thousands of small ``sgd_gradient`` calls: on a busy machine
    every parallel launch can stall for a scheduler quantum, which makes them 10-30x
    slower. Results do not depend on the thread count (tested in test_engines.py).
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
