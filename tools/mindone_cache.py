"""Convert an embedding cache written by mindone's Latte (tools/embedding_cache.py there) into a latte-ms cache.

    python tools/mindone_cache.py --source path/to/sky_train_cache --cache_folder path/to/sky_train_latte
    python train.py -c configs/training/sky_numpy_video.yaml --data_config.data_folder path/to/sky_train_latte

mindone's numpy (<video>/video_latent-<frame>.npy), npz (<video>.npz) and mindrecord (<name><N>.mindrecord)
caches of unconditional videos are read (layouts: latte/data/mindone_cache.py); every file's shape and dtype is
checked and the result is a latte-ms numpy cache (train_data_type: numpy). --sd_scale_factor and --vae_checkpoint
are those the mindone cache was written with (its config's sd_scale_factor and vae_checkpoint): mindone does not
store them. Class and text caches are refused (cache those videos again with tools/embedding_cache.py).
A stopped run continues where it stopped when run again.
"""
import argparse
import sys

from latte.cli import run_cli
from latte.models.vae_config import VAE_SCALE_FACTOR

DEFAULT_VAE = "models/sd-vae-ft-mse.ckpt"  # mindone's default vae_checkpoint


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the mindone cache folder (its cache_folder)")
    parser.add_argument("--cache_folder", required=True, help="the latte-ms cache to write (a new or a stopped one)")
    parser.add_argument("--sd_scale_factor", type=float, default=VAE_SCALE_FACTOR,
                        help="the scale mindone multiplied the latents by (its config's sd_scale_factor)")
    parser.add_argument("--vae_checkpoint", default=DEFAULT_VAE,
                        help="the VAE mindone encoded with (recorded; training warns when it decodes with another)")
    return parser.parse_args(argv)


def main(argv=None):
    # 1. Arguments and logging
    args = parse_args(argv)
    from latte.data.mindone_cache import convert_mindone_cache
    from latte.env import setup_logging

    setup_logging()

    # 2. Read, check and write, video by video
    report = convert_mindone_cache(args.source, args.cache_folder, args.sd_scale_factor, args.vae_checkpoint)
    print(f"converted the mindone {report.layout} cache {args.source} into {args.cache_folder}: {report.converted} "
          f"videos ({report.frames} latent frames) written, {report.already} converted by an earlier run, of "
          f"{report.videos}; train with data_config.train_data_type: numpy")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
