"""Extract a sampled fraction of video frames as PNGs, for autoencoder training (tools/train_vae.py).

    python tools/capture_frames.py -c configs/training/vae_moving_digits.yaml
    python tools/capture_frames.py -c configs/training/vae_ucf101.yaml --ae_frame_sample_prob 0.05

Reads the videos named by data_config (data_folder, train_data_type, filter_list), keeps each frame with
probability ae_frame_sample_prob (seeded by seed and the video's name) and writes them at their original size to
frame_folder/<video>/frame_XXXXXX.png. Unreadable videos are skipped and named in the summary. Running it again
continues an interrupted capture (finished videos are skipped).
"""
import logging

from latte.config import load_config
from latte.env import setup_logging
from latte.vae_training.config import VAETrainConfig

logger = logging.getLogger("capture_frames")


def main(argv=None):
    # 1. Config and logging
    cfg = load_config(VAETrainConfig, argv, __doc__)
    setup_logging()
    logger.info("capturing %.3g of the frames of %s (%s) into %s", cfg.ae_frame_sample_prob,
                cfg.data_config.data_folder or cfg.data_config.train_data_type, cfg.data_config.train_data_type,
                cfg.frame_folder)

    # 2. Capture, video by video
    from latte.vae_training.frames import capture_frames

    report = capture_frames(cfg)

    # 3. Summary
    logger.info("done: %s", report.summary())
    return report


if __name__ == "__main__":
    main()
