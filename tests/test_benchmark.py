"""tools/benchmark.py runs every task on a tiny model and writes the JSON it promises."""
import json

import pytest

from tools import benchmark

TINY = ["--model_name", "Latte-T/2", "--num_frames", "2", "--latent_size", "4", "--steps", "1",
        "--device_target", "CPU"]


@pytest.mark.parametrize("task, extra, rate", [
    ("forward", [], "videos_per_s"),
    ("train", ["--condition", "class"], "images_per_s"),
    ("sample", ["--ddim", "--condition", "class", "--cfg_scale", "4"], "videos_per_s"),
])
def test_benchmark_tasks_write_json(tmp_path, task, extra, rate):
    out = tmp_path / f"{task}.json"
    assert benchmark.main([task, *TINY, *extra, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == task and result["device"] == "CPU"
    assert result["s_per_step"] > 0 and result[rate] > 0 and result["peak_rss_gib"] > 0
