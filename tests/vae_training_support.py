"""Shared helpers of the VAE-training tests: a tiny 1-channel 24x32 frame set, a tiny random LPIPS, run args."""
import os

import numpy as np

from latte.checkpoint_io import save_ms_checkpoint
from latte.vae_training.frames import list_frame_images

TINY_LPIPS_CHANNELS = (4, 8, 8, 16, 16)
FRAME_ARGS = ["--frame_height", "24", "--frame_width", "32", "--frame_channels", "1", "--device_target", "CPU"]
TINY_VAE_ARGS = ["--block_out_channels", "[8, 16, 16]", "--norm_num_groups", "4", "--latent_channels", "2",
                 "--layers_per_block", "1", "--mid_block_add_attention", "False", "--disc_layers", "2",
                 "--disc_channels", "8", "--autoencoder_batch_size", "4", "--val_frames", "4", "--sample_count", "4",
                 "--num_workers", "1", "--log_interval", "1"]


def write_frames(folder, count=16):
    """count moving-digit frames (RGB PNGs, 24x32) captured by tools/capture_frames.py into folder."""
    from tools import capture_frames

    capture_frames.main(["--data_config.train_data_type", "synthetic", "--data_config.num_videos", str(count // 4),
                         "--data_config.video_length", "4", "--data_config.synthetic_shapes", "digit",
                         "--frame_folder", str(folder), "--ae_frame_sample_prob", "1.0", *FRAME_ARGS])
    assert len(list_frame_images(str(folder))) == count
    return str(folder)


def write_tiny_lpips(path, seed=0):
    """A random LPIPS of VGG16's structure but tiny widths, saved as tools/lpips_converter.py would; the linear
    heads are non-negative like the released ones."""
    from latte.vae_training.lpips import LPIPS, lpips_meta

    rng = np.random.default_rng(seed)
    net = LPIPS(TINY_LPIPS_CHANNELS)
    params = {}
    for name, p in net.parameters_and_names():
        value = rng.standard_normal(p.shape).astype(np.float32) * (0.3 if p.ndim == 4 else 0.05)
        params[name] = np.abs(value) if name.startswith("lins.") else value
    save_ms_checkpoint(params, str(path), lpips_meta(TINY_LPIPS_CHANNELS))
    return str(path)


def train_args(frames, out, lpips, *extra):
    return FRAME_ARGS + TINY_VAE_ARGS + ["--frame_folder", frames, "--output_path", str(out),
                                         "--lpips_checkpoint", lpips, *map(str, extra)]


def read_metrics(out):
    import csv

    with open(os.path.join(str(out), "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def train_tiny_vae(root):
    """Two steps of tools/train_vae.py on tiny frames (quality irrelevant): the path of its vae.ckpt."""
    from tools import train_vae

    frames = write_frames(os.path.join(str(root), "frames"))
    result = train_vae.main(train_args(frames, os.path.join(str(root), "run"), "", "--max_steps", 2,
                                       "--disc_start", 100, "--autoencoder_img_save_steps", 100,
                                       "--perceptual_weight", 0))
    return result["vae_checkpoint"]
