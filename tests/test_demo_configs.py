"""The shipped demo pair (configs/training/demo.yaml, configs/inference/demo.yaml), shortened: train.py runs it
with samples at its checkpoint, and sample.py accepts the result (the diffusion keys of both files agree)."""
import os
import re

import pytest
import yaml

import sample
import train
from latte.checkpoint_io import weights_name

TRAIN_CONFIG = os.path.join("configs", "training", "demo.yaml")
SAMPLE_CONFIG = os.path.join("configs", "inference", "demo.yaml")


@pytest.mark.slow
def test_demo_trains_and_samples(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "demo"
    assert train.main(["-c", TRAIN_CONFIG, "--output_path", str(out), "--max_steps", "2", "--ckpt_save_interval", "2",
                       "--sample_steps", "2", "--sample_num_videos", "2"]) == 2
    gifs = sorted(os.listdir(out / "samples" / "step-0000002"))
    assert gifs == ["sample_000.gif", "sample_001.gif"]  # as sample.py names them
    log = (out / "train.log").read_text()
    assert "step 2: " in log and "checkpoint samples coherent" in log  # the demo's measures, per checkpoint
    assert re.search(r"step 2: \d+ of 2 checkpoint samples coherent \(\d+%\), \d+ show squares", log)
    run_dir = sample.main(["-c", SAMPLE_CONFIG, "--checkpoint", str(out / "ckpt" / "latte-0000002-ema.ckpt"),
                           "--sampling_steps", "2", "--num_samples", "2", "--batch_size", "2",
                           "--output_path", str(tmp_path / "samples")])
    assert {"sample_000.gif", "sample_001.gif", "first_frames.png"} <= set(os.listdir(run_dir))


def test_inference_config_reads_the_last_checkpoint_the_training_config_writes(repo_root):
    """Changing the demo's max_steps or output_path without the sampling config would leave sample.py pointing at a
    checkpoint that the shipped training never writes."""
    with open(os.path.join(repo_root, TRAIN_CONFIG)) as f:
        training = yaml.safe_load(f)
    with open(os.path.join(repo_root, SAMPLE_CONFIG)) as f:
        sampling = yaml.safe_load(f)
    last = weights_name(training["max_steps"], ema=True)
    expected = os.path.join(training["output_path"], "ckpt", last)
    assert os.path.normpath(sampling["checkpoint"]) == os.path.normpath(expected)


def test_checkpoint_samples_use_the_sampler_of_the_inference_config(repo_root):
    """The coherence logged at each checkpoint is the coherence sample.py's videos would have: same steps, same
    method, same resampling rounds."""
    with open(os.path.join(repo_root, TRAIN_CONFIG)) as f:
        training = yaml.safe_load(f)
    with open(os.path.join(repo_root, SAMPLE_CONFIG)) as f:
        sampling = yaml.safe_load(f)
    pairs = {"sample_steps": "sampling_steps", "sample_ddim": "ddim_sampling",
             "sample_resample_rounds": "resample_rounds"}
    assert {key: training[key] for key in pairs} == {key: sampling[other] for key, other in pairs.items()}
