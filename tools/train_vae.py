"""Train a KL autoencoder (AutoencoderKL) on captured frames: reconstruction + KL + LPIPS + PatchGAN.

    python tools/capture_frames.py -c configs/training/vae_moving_digits.yaml    # once: videos -> frames
    python tools/train_vae.py -c configs/training/vae_moving_digits.yaml
    python tools/train_vae.py -c configs/training/vae_moving_digits.yaml --resume    # continue the newest state

Writes to output_path: config.yaml, train_vae.log, metrics.csv, samples/step-*.png (held-out frames above their
reconstructions), ckpt/ (vae-<step>.ckpt weights + .json architecture, train_state-<step>.ckpt for --resume) and
vae.ckpt (+ .json), the final weights: set vae_checkpoint to it in train.py / sample.py configs.
"""
import logging
import os

from latte.cli import run_cli
from latte.config import load_config
from latte.env import restart_with_fast_settings, setup_context_from, setup_logging
from latte.vae_training.config import VAETrainConfig

logger = logging.getLogger("train_vae")


def main(argv=None):
    # 1. Config, device, logging
    cfg = load_config(VAETrainConfig, argv, __doc__)
    setup_logging()
    ctx = setup_context_from(cfg)  # one device: the config has no use_parallel
    setup_logging(os.path.join(cfg.output_path, "train_vae.log"))

    # 2. Frames, networks, compiled steps (and the resume state)
    from latte.vae_training.trainer import VAETrainer

    trainer = VAETrainer(cfg, ctx).build()

    # 3. Train; the final weights go to output_path/vae.ckpt
    return trainer.fit()


if __name__ == "__main__":
    restart_with_fast_settings()
    raise SystemExit(run_cli(main, exit_code_from_main=False))
