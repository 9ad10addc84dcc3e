"""The kernel tests run each vector path that a user's CPU may take (c_harness.BUILDS): each
build compiles the vector ISA it is meant to, and the models' own build is the native one."""
import platform

import pytest

from c_harness import BUILDS, load_runtime, vector_isa
from hytorch import machine

ISAS = {"avx512", "avx2", "avx", "neon", "sse2", "generic"}


def built_isa(name):
    ffi, lib = load_runtime(machine.RUNTIME_CDEF, BUILDS[name])
    return ffi.string(lib.ht_vector_isa()).decode()


@pytest.mark.parametrize("name", list(BUILDS))
def test_each_build_runs_the_vector_path_it_compiles(name):
    assert built_isa(name) == vector_isa(BUILDS[name]) and built_isa(name) in ISAS


def test_the_builds_are_different_paths():
    assert len({built_isa(name) for name in BUILDS}) == len(BUILDS)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_x86_builds_cover_every_narrower_path_of_this_cpu():
    isas = {built_isa(name) for name in BUILDS}
    assert "sse2" in isas
    if vector_isa() == "avx512":
        assert "avx2" in isas


def test_models_are_built_for_the_native_path():
    assert machine.vector_isa() == built_isa("native")
