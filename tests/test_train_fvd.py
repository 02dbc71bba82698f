"""train.py's checkpoint FVD (fvd_at_checkpoint): its keys' one-line errors, and a tiny Latte-T run on frame
folders with a converted random stand-in I3D whose FVD column equals tools/eval_metrics.py's FVD functions on the
same clips and is the same after a resume."""
import csv
import os
import shutil

import numpy as np
import pytest

import sample
import train
from latte.config import ConfigError
from latte.data import write_synthetic_dataset
from latte.metrics import features as features_module
from latte.metrics.clips import Clip, list_videos, read_clip
from latte.metrics.detectors import detector_by_size
from latte.metrics.recipes import FVDRecipe, compute_fvd

FRAMES = 9  # the fewest frames the I3D takes
SIZE = 16
HELD_OUT_STRIDE = 2
TINY = ["--model_name", "Latte-T/2", "--image_size", SIZE, "--num_frames", FRAMES, "--device_target", "CPU",
        "--mode", 1, "--vae_checkpoint", "", "--train_batch_size", 2, "--step_mode", "True",
        "--data_config.num_parallel_workers", 1, "--data_config.sample_stride", 1,
        "--data_config.train_data_type", "frame_folder"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fvd")
    write_synthetic_dataset(str(root / "train"), n_videos=4, n_frames=FRAMES + 1, size=SIZE, seed=1)
    write_synthetic_dataset(str(root / "held_out"), n_videos=2, n_frames=FRAMES * HELD_OUT_STRIDE + 3, size=SIZE,
                            seed=2)
    return root


def run_train(out, *extra):
    return train.main([str(a) for a in TINY + ["--output_path", out, *extra]])


def fvd_keys(folders, i3d):
    return ["--data_config.data_folder", folders / "train", "--fvd_at_checkpoint", "True", "--fvd_i3d_checkpoint",
            i3d, "--fvd_real_data_path", folders / "held_out"]


@pytest.mark.parametrize("change, needle", [
    (["--fvd_i3d_checkpoint", ""], r"fvd_i3d_checkpoint, which is empty: convert the released i3d_torchscript.pt "
                                   r"with python tools/metrics_converter.py --detector i3d"),
    (["--fvd_i3d_checkpoint", "missing.ckpt"], r"fvd_i3d_checkpoint missing.ckpt not found: convert .*"
                                               r"tools/metrics_converter.py"),
    (["--fvd_real_data_path", "no/such/folder"], r"fvd_real_data_path 'no/such/folder' is not a folder"),
    (["--num_frames", 8], r"num_frames=8: the FVD's I3D needs clips of at least 9 frames"),
    (["--fvd_num_videos", 1], r"fvd_num_videos"),
])
def test_bad_keys_are_one_line_errors(tmp_path, folders, change, needle):
    i3d = tmp_path / "i3d.ckpt"
    i3d.write_bytes(b"only its existence is checked before training")
    with pytest.raises(ConfigError, match=needle) as err:  # a flag given twice: the last value counts
        run_train(tmp_path / "run", *fvd_keys(folders, i3d), "--max_steps", 1, *change)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "ckpt").exists()  # refused while reading the config


def test_too_few_held_out_clips_stop_the_run_before_training(tmp_path, folders):
    held_out = tmp_path / "held_out"
    shutil.copytree(folders / "held_out", held_out)
    short = sorted(p for p in held_out.rglob("*") if p.is_dir() and any(p.glob("*.png")))[1]
    for frame in sorted(short.glob("*.png"))[FRAMES:]:  # 9 frames left: a clip of every 2nd frame needs 18
        frame.unlink()
    i3d = tmp_path / "i3d.ckpt"
    i3d.write_bytes(b"not read: the held-out clips are planned first")
    args = fvd_keys(folders, i3d)
    args[args.index("--fvd_real_data_path") + 1] = held_out
    with pytest.raises(ConfigError, match=rf"fvd_real_data_path {held_out}: 1 video\(s\) long enough for a clip of 9 "
                                          rf"frames, every 2-th \(18 frames\); the FVD needs at least 2: add held-out"):
        run_train(tmp_path / "run", *args, "--fvd_real_subsample", HELD_OUT_STRIDE, "--max_steps", 1)
    assert not list((tmp_path / "run" / "ckpt").glob("*.ckpt"))


def test_reloaded_weights_reach_a_step_that_already_ran(mode):
    """The checkpoint sampler reloads its net after the compiled step ran (in PyNative too, where set_data alone
    would leave the compiled step reading the first weights)."""
    import mindspore as ms
    from mindspore import nn

    from latte.checkpoint_io import load_strict

    class Twice(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @ms.jit
        def construct(self, x):
            return self.net(x) * 2

    net = nn.Dense(3, 2)
    step, x = Twice(net), ms.Tensor(np.ones((1, 3), np.float32))
    rng = np.random.default_rng(0)
    for first, in_place in ((True, False), (False, True), (False, True)):
        weights = {name: rng.standard_normal(p.shape).astype(np.float32) for name, p in net.parameters_and_names()}
        load_strict(net, weights, in_place=in_place)
        want = 2 * (x.asnumpy() @ weights["weight"].T + weights["bias"])
        np.testing.assert_allclose(step(x).asnumpy(), want, rtol=1e-6, err_msg=f"{mode}, first load {first}")


def _fvd_column(out):
    with open(out / "metrics.csv", newline="") as f:
        return {int(r["step"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_fvd_at_checkpoints_equals_eval_metrics_and_survives_a_resume(tmp_path, folders, monkeypatch):
    pytest.importorskip("torch")
    from tests.torch_metrics import TorchI3D, redraw_, save_scripted
    from tools.metrics_converter import main as convert_main

    save_scripted(redraw_(TorchI3D(width_divisor=8), seed=5), tmp_path / "i3d_torchscript.pt")
    i3d = tmp_path / "i3d.ckpt"
    convert_main(["--detector", "i3d", "--source", str(tmp_path / "i3d_torchscript.pt"), "--target", str(i3d)])
    common = fvd_keys(folders, i3d) + [
        "--fvd_real_subsample", HELD_OUT_STRIDE, "--fvd_num_videos", 2, "--fvd_batch_size", 2, "--sample_steps", 2,
        "--ckpt_save_interval", 1, "--log_interval", 2, "--start_learning_rate", 5e-3, "--ema_decay", 0.5,
        "--sample_at_checkpoint", "True", "--sample_num_videos", 2,
        "--predict_xstart", "True", "--learn_sigma", "False"]  # the videos are the model's x_0, not clipped noise

    # 1. Two steps, a checkpoint (and its FVD) after each; step 1 is not a logged step: a row of its FVD alone
    out = tmp_path / "run"
    assert run_train(out, *common, "--max_steps", 2) == 2
    rows = _fvd_column(out)
    assert sorted(rows) == [1, 2] and rows[1]["loss"] == "" and float(rows[2]["loss"]) > 0
    fvd = {step: float(rows[step]["fvd"]) for step in rows}
    assert all(np.isfinite(v) and v > 0 for v in fvd.values()) and fvd[1] != fvd[2]  # the weights changed
    assert len(os.listdir(out / "samples" / "step-0000002")) == 2  # the GIFs share the sampler

    # 2. The same number from tools/eval_metrics.py's FVD functions on the held-out folder and step 2's videos
    recipe = FVDRecipe(num_frames=FRAMES, max_real=None, num_gen=2, real_subsample=HELD_OUT_STRIDE, gen_subsample=1)
    want, n_real, n_gen = compute_fvd(recipe, str(folders / "held_out"), str(out / "fvd" / "step-0000002"),
                                      detector_by_size(str(i3d), "i3d"), str(i3d), 2, seed=42)
    assert (n_real, n_gen) == (2, 2)
    assert abs(fvd[2] - want) <= 1e-6 * want

    # 3. The videos are those sample.py makes from the step-2 EMA weights with the same settings
    run_dir = sample.main(["--checkpoint", str(out / "ckpt" / "latte-0000002-ema.ckpt"), "--device_target", "CPU",
                           "--mode", "1", "--num_samples", "2", "--batch_size", "2", "--sampling_steps", "2",
                           "--ddim_sampling", "True", "--save_format", "frames", "--output_path",
                           str(tmp_path / "sampled")])
    ours, theirs = list_videos(str(out / "fvd" / "step-0000002")), list_videos(os.path.join(run_dir, "videos"))
    assert [e.name for e in ours] == [e.name for e in theirs]
    for a, b in zip(ours, theirs):
        whole = [read_clip(Clip(e.name, e.path, tuple(e.frames), tuple(range(FRAMES)))) for e in (a, b)]
        np.testing.assert_array_equal(*whole)  # (3, F, H, W) uint8 each

    # 4. Resumed from step 1's state: the step-1 row is kept, the held-out features come from the cache (no
    #    held-out frame is read), step 2's FVD is measured again and equals the straight run's
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "fvd" / "step-0000002")
    read = []
    original = features_module.read_clips
    monkeypatch.setattr(features_module, "read_clips",
                        lambda clips: read.extend(c.path for c in clips) or original(clips))
    assert run_train(resumed, *common, "--max_steps", 2, "--resume",
                     resumed / "ckpt" / "train_state-0000001.ckpt") == 2
    assert read and all(str(resumed / "fvd" / "step-0000002") in p for p in read)
    again = _fvd_column(resumed)
    assert [again[s]["fvd"] for s in (1, 2)] == [rows[s]["fvd"] for s in (1, 2)]
