"""tools/benchmark.py runs every task on a tiny model and writes the JSON it promises."""
import json

import pytest

from tools import benchmark

TINY = ["--model_name", "Latte-T/2", "--num_frames", "2", "--latent_size", "4", "--steps", "1",
        "--device_target", "CPU"]


@pytest.mark.parametrize("task, extra, rate", [
    ("forward", [], "videos_per_s"),
    ("train", ["--condition", "class"], "images_per_s"),
    ("train", ["--condition", "class", "--use_image_num", "2"], "images_per_s"),  # image-video joint
    ("sample", ["--ddim", "--condition", "class", "--cfg_scale", "4"], "videos_per_s"),
])
def test_benchmark_tasks_write_json(tmp_path, task, extra, rate):
    out = tmp_path / f"{task}.json"
    assert benchmark.main([task, *TINY, *extra, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == task and result["device"] == "CPU"
    assert result["s_per_step"] > 0 and result[rate] > 0 and result["peak_rss_gib"] > 0


def test_text_to_video_forward(tmp_path):
    """A text-to-video variant times the guided denoiser call: the model batch is doubled by --cfg_scale."""
    out = tmp_path / "t2v.json"
    assert benchmark.main(["forward", "--model_name", "Latte-1-T", "--num_frames", "2", "--latent_size", "4",
                           "--steps", "1", "--device_target", "CPU", "--cfg_scale", "7.5", "--text_tokens", "5",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model_batch"] == 2 and result["s_per_step"] > 0 and result["params_m"] > 0


@pytest.mark.parametrize("task", ["forward", "train", "sample"])
def test_torch_peer_tasks(tmp_path, task):
    """The PyTorch side of compare times the official computation on the same shapes."""
    pytest.importorskip("torch")
    out = tmp_path / f"{task}.json"
    assert benchmark.main([task, "--peer", "torch", *TINY, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["s_per_step"] > 0 and result["peak_rss_gib"] > 0


def test_vae_task_times_encode_and_decode(tmp_path):
    out = tmp_path / "vae.json"
    assert benchmark.main(["vae", "--image_size", "16", "--steps", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["encode"]["s_per_step"] > 0 and result["decode"]["s_per_step"] > 0


def test_compare_refuses_a_busy_machine():
    with pytest.raises(SystemExit, match="of the CPUs busy .* --max_busy"):
        benchmark.main(["compare", *TINY, "--max_busy", "-1"])


def test_compare_runs_both_sides_and_reports_ratios(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "compare.json"
    assert benchmark.main(["compare", *TINY, "--compare_tasks", "forward", "--repeats", "1", "--force",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    forward = result["summary"]["forward"]
    assert forward["time_ratio"] == pytest.approx(forward["latte_ms_s"] / forward["torch_s"], rel=0.01)
    assert forward["memory_ratio"] > 0 and len(result["runs"]["forward"]["torch"]) == 1


def test_compare_cached_times_runs_that_load_the_graph_cache(tmp_path):
    """--cached: an untimed run compiles into one cache folder and the timed latte-ms runs load from it."""
    pytest.importorskip("torch")
    out = tmp_path / "compare.json"
    assert benchmark.main(["compare", *TINY, "--compare_tasks", "train", "--repeats", "1", "--force", "--cached",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    cold, timed = result["cold_runs"]["train"], result["runs"]["train"]["latte-ms"][0]
    assert cold["graph_cache"] and timed["graph_cache"] == cold["graph_cache"]
    assert result["runs"]["train"]["torch"][0].get("graph_cache") is None
    train = result["summary"]["train"]
    assert train["memory_ratio_cold"] == pytest.approx(train["latte_ms_cold_peak_gib"] / train["torch_peak_gib"],
                                                       rel=0.01)
    assert train["latte_ms_compile_s"] < train["latte_ms_cold_compile_s"]  # loading is quicker than compiling


def test_profile_lists_op_types(tmp_path):
    out = tmp_path / "profile.json"
    assert benchmark.main(["profile", *TINY, "--profile_of", "forward", "--out", str(out)]) == 0
    ops = json.loads(out.read_text())["ops"]
    assert ops and {"op", "share", "calls_per_step", "ms_per_call"} <= set(ops[0])
    assert abs(sum(op["share"] for op in ops)) <= 1.0 + 1e-6


def test_profile_of_the_torch_side_lists_its_ops(tmp_path):
    """profile --peer torch: torch.profiler's table of the official computation, in the same rows."""
    pytest.importorskip("torch")
    out = tmp_path / "profile_torch.json"
    assert benchmark.main(["profile", "--peer", "torch", *TINY, "--profile_of", "train", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    ops = result["ops"]
    assert {"op", "share", "calls_per_step", "ms_per_call"} <= set(ops[0]) and result["timing"]["s_per_step"] > 0
    names = {op["op"] for op in ops}
    assert names & {"aten::addmm", "aten::mm", "aten::bmm"}  # the matrix products are among the top ops
    assert 0 < sum(op["share"] for op in ops) <= 1.0 + 1e-6
