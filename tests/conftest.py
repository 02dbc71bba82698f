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
