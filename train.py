"""Train Latte on videos (or on cached latents).

    python train.py -c configs/training/sky_video.yaml                       # Ascend by default
    python train.py -c configs/training/sky_video.yaml --device_target CPU   # or GPU
    python train.py -c configs/training/demo.yaml                            # runs anywhere, no downloads
    python train.py -c CONFIG --resume                                       # continue the newest state

Writes to output_path: config.yaml, train.log, metrics.csv, loss_curve.png, ckpt/ (raw + EMA weights and
resume states), samples/ (GIFs at checkpoints when sample_at_checkpoint), fvd/ (with fvd_at_checkpoint: the
held-out features' cache and each checkpoint's generated videos; the FVD is a column of metrics.csv).
"""
import logging
import os

from latte.cli import run_cli
from latte.config import ConfigError, load_config
from latte.env import restart_with_fast_settings, setup_context_from, setup_logging
from latte.options import TrainConfig

logger = logging.getLogger("train")


def main(argv=None):
    # 1. Config, device, logging
    if argv == []:  # run_cli passes the command line: nothing at all was given
        raise ConfigError("train.py needs a config: python train.py -c configs/training/demo.yaml (runs anywhere, no "
                          "downloads), or -c one of configs/training/*.yaml")
    cfg = load_config(TrainConfig, argv, __doc__)
    setup_logging()
    ctx = setup_context_from(cfg)
    log_name = "train.log" if ctx.is_main else f"train_rank{ctx.rank}.log"
    setup_logging(os.path.join(cfg.output_path, log_name), rank=ctx.rank)

    # 2. Data, models, compiled step (and the resume state); MindSpore is imported from here on
    from latte.training.trainer import Trainer

    trainer = Trainer(cfg, ctx).build()

    # 3. Train
    return trainer.fit()


if __name__ == "__main__":
    restart_with_fast_settings()
    raise SystemExit(run_cli(main, exit_code_from_main=False))
