"""The graph cache: compiled graphs reused by a later run only when they are that run's graphs, and the reusing
run computes exactly what a compiling run computes."""
import glob
import os
import re
import subprocess
import sys

import pytest

from latte import graph_cache as gc
from latte.env import RunContext

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU",
        "--vae_checkpoint", "", "--step_mode", "True", "--ckpt_save_interval", "2", "--max_steps", "4",
        "--train_batch_size", "2", "--data_config.train_data_type", "synthetic", "--data_config.num_videos", "8",
        "--data_config.num_parallel_workers", "1", "--data_config.sample_stride", "1"]
DIGEST = re.compile(r"weights digest at step 4, rank 0/1: raw (\w+), EMA (\w+)")
GRAPH_CTX = RunContext("CPU", 0, 0, 1)


def test_key_follows_graph_settings_and_ignores_output_keys():
    base = {"model_name": "Latte-T/2", "max_grad_norm": 1.0, "output_path": "a", "resume": None}
    key = gc.graph_key("train.py", base, "CPU")
    assert gc.graph_key("train.py", dict(base, output_path="b", resume="latest"), "CPU") == key
    assert gc.graph_key("train.py", dict(base, max_grad_norm=0.5), "CPU") != key  # a constant in the graph
    assert gc.graph_key("sample.py", base, "CPU") != key
    assert gc.graph_key("train.py", base, "CPU", rank=1, group_size=2) != key


def test_sources_digest_changes_with_any_source_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("x = 1\n")
    (tmp_path / "k.cc").write_text("int f();\n")
    (tmp_path / "notes.txt").write_text("not a source\n")
    before = gc.sources_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("changed\n")
    assert gc.sources_digest(tmp_path) == before
    (tmp_path / "k.cc").write_text("int g();\n")
    assert gc.sources_digest(tmp_path) != before


def test_cache_is_on_once_per_process_and_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "_used_in_process", [])
    monkeypatch.delenv(gc.ENABLE_VAR, raising=False)
    monkeypatch.delenv(gc.PATH_VAR, raising=False)
    monkeypatch.setattr(sys, "argv", ["-c"])  # python -c, a pytest-xdist worker: MindSpore cannot hash the script
    with gc.graph_cache(True, str(tmp_path), "train.py", {"a": 1}, GRAPH_CTX) as no_script:
        assert no_script is None and gc.ENABLE_VAR not in os.environ
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "train.py")])
    with gc.graph_cache(True, str(tmp_path), "train.py", {"a": 1}, GRAPH_CTX) as folder:
        assert folder.startswith(str(tmp_path / gc.CACHE_FOLDER))
        assert os.environ[gc.ENABLE_VAR] == "1" and os.environ[gc.PATH_VAR] == folder
    assert gc.ENABLE_VAR not in os.environ and gc.PATH_VAR not in os.environ
    with gc.graph_cache(True, str(tmp_path), "train.py", {"a": 2}, GRAPH_CTX) as second:
        assert second is None and gc.ENABLE_VAR not in os.environ  # MindSpore would keep the first folder
    with gc.graph_cache(True, str(tmp_path), "x", {}, RunContext("CPU", 1, 0, 1)) as pynative:
        assert pynative is None
    with gc.graph_cache(False, str(tmp_path), "x", {}, GRAPH_CTX) as off:
        assert off is None


def _train(out, *extra):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "train.py", *TINY, "--output_path", str(out), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_resume_from_cached_graphs_equals_the_uninterrupted_run(tmp_path):
    """4 steps compile and save the graphs; the step-4 files removed, a resume from step 2 loads the graphs from the
    cache (no compile) and ends with the same weights, bit for bit. With another setting the cache is not used."""
    out = tmp_path / "run"
    first = _train(out)
    assert "graph cache: compiling into" in first
    digest = DIGEST.search(first).groups()
    assert glob.glob(str(out / gc.CACHE_FOLDER / "*" / "rank_0" / "graph_cache" / "compile_cache_0.mindir"))
    for path in glob.glob(str(out / "ckpt" / "*0000004*")):
        os.remove(path)
    resumed = _train(out, "--resume", "latest")
    assert "reusing the graphs compiled by an earlier run" in resumed
    assert DIGEST.search(resumed).groups() == digest
    for path in glob.glob(str(out / "ckpt" / "*0000004*")):
        os.remove(path)
    other = _train(out, "--resume", "latest", "--log_interval", "2")  # another setting: compiled again
    assert "graph cache: compiling into" in other
    assert DIGEST.search(other).groups() == digest
    assert len(os.listdir(out / gc.CACHE_FOLDER)) == 2


def test_graph_cache_false_writes_nothing(tmp_path):
    out = tmp_path / "run"
    log = _train(out, "--max_steps", "1", "--graph_cache", "False")
    assert "graph cache" not in log and not (out / gc.CACHE_FOLDER).exists()
