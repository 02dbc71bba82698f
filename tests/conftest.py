"""Shared pytest fixtures for latte-ms tests."""
import os

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["pynative", "graph"])
def mode(request):
    """Runs a test in MindSpore's PyNative and graph mode; yields the mode's name."""
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=previous)


@pytest.fixture(scope="session")
def vae_path(tmp_path_factory):
    """A random tiny AutoencoderKL checkpoint with its architecture record (as tools/vae_converter.py writes)."""
    from tests.cache_support import write_tiny_vae

    return write_tiny_vae(tmp_path_factory.mktemp("vae") / "tiny_vae.ckpt")


def pytest_configure(config):
    # MindSpore's oneDNN convolutions are ~100x slow on AVX-512 CPUs unless the ISA is capped at AVX2 before
    # the first conv runs (see latte.env.restart_with_fast_settings, which the entry scripts use).
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    # matplotlib 3.9 calls pyparsing names that newer pyparsing deprecates; not ours to fix
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:matplotlib")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pyparsing.util")
