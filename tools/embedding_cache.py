"""Cache the VAE latents of every frame of every training video, to train without decoding or encoding.

    python tools/embedding_cache.py -c configs/cache/sky_video.yaml --cache_folder DIR \
        --cache_file_type numpy|mindrecord [--save_data_type float16] [--resume_cache_index K]
    python train.py -c configs/training/sky_numpy_video.yaml --data_config.data_folder DIR
    python tools/embedding_cache.py -c configs/cache/sky_video.yaml --cache_folder DIR --condition text \
        --text_encoder models/t5-v1_1-xxl.ckpt --tokenizer models/Latte-1 [--data_config.caption_file captions.csv]

The config's data keys, image_size, condition, vae_checkpoint and sd_scale_factor say what is cached (as the
training config that reads the cache has them). Condition text also stores the T5 states and mask of each
video's caption (a caption CSV, or a .txt beside each video), so text-to-video training needs neither VAE nor T5. Frames are read and transformed as training reads them,
whole videos at stride 1 without flips, so training may take any num_frames and sample_stride later.
Rerunning continues a cache (cached videos are never rewritten); a stopped run prints where to continue.
Parallel: --rank R --world_size N in N processes, or --use_parallel True under msrun.
"""
import logging
import sys

from latte.cli import run_cli
from latte.config import load_config
from latte.env import restart_with_fast_settings, setup_context_from, setup_logging
from latte.options import EmbeddingCacheConfig

logger = logging.getLogger("embedding_cache")


def main(argv=None):
    # 1. Config, device, rank
    cfg = load_config(EmbeddingCacheConfig, argv, __doc__)
    from latte.data.cache_builder import CacheInterrupted, build_cache, load_caption_encoder  # MindSpore from here

    setup_logging()
    ctx = setup_context_from(cfg)
    rank, world_size = (ctx.rank, ctx.group_size) if cfg.use_parallel else (cfg.rank or 0, cfg.world_size or 1)

    # 2. The frozen VAE
    from latte.models.vae import load_vae

    vae = load_vae(cfg.vae_checkpoint, dtype=cfg.vae_dtype)

    # 3. The frozen T5 and its tokenizer (condition text)
    captions = load_caption_encoder(cfg, ctx.device_target) if cfg.condition == "text" else None

    # 4. Encode and write, video by video
    try:
        report = build_cache(cfg, vae, rank, world_size, captions=captions)
    except CacheInterrupted as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"cache {cfg.cache_folder} (rank {rank}/{world_size}): {report.summary()}")
    for video_id, name, reason in report.failed:
        print(f"  not cached: video {video_id} {name}: {reason}")
    return 0


def cli(argv=None):
    """main() with user errors (config, data, checkpoints, missing files) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    restart_with_fast_settings()
    sys.exit(cli())
