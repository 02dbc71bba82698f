"""The training data of train.py: the batched dataset of a TrainConfig (videos or an embedding cache) with every
per-sample random input appended (timestep, noise, dropout draws: latte/training/loss.py StepNoise) and the
condition columns its loss takes (labels, caption tokens or cached T5 states, the joint images' draws)."""
import functools

from latte.config import ConfigError
from latte.data.transforms import to_channels
from latte.io import RGB_CHANNELS
from latte.training.joint import IMAGE_COLUMNS, IMAGE_DROP_COLUMN, ImageConditionDrop
from latte.training.loss import RANDOM_COLUMNS, StepNoise
from latte.training.text_loss import CACHED_TEXT_COLUMNS, TEXT_COLUMNS, CaptionTokens


def create_training_dataset(cfg, ctx, start_step, num_timesteps):
    """The batched dataset with the step randomness appended; returns (dataset, info)."""
    from latte.data import create_cache_dataset, create_video_dataset

    common = dict(condition=cfg.condition, shard_id=ctx.rank, num_shards=ctx.group_size, seed=cfg.seed,
                  start_step=start_step)
    if cfg.trains_on_cache:  # "video" holds scaled latents (B, F, C, h, w)
        dataset, info = create_cache_dataset(
            cfg.data_config, cfg.image_size, cfg.num_frames, cfg.train_batch_size,
            latent_shape=(cfg.latent_channels, cfg.latent_size, cfg.latent_size),
            scale_factor=cfg.latent_scale, vae_checkpoint=cfg.vae_checkpoint, **common)
    else:
        dataset, info = create_video_dataset(cfg.data_config, cfg.image_size, cfg.num_frames,
                                             cfg.train_batch_size, **common)
        if not cfg.pixel_space and cfg.frame_channels != RGB_CHANNELS:  # e.g. a grayscale VAE from train_vae.py
            to_vae_channels = functools.partial(to_channels, channels=cfg.frame_channels, axis=-3)  # RGB -> luma
            dataset = dataset.map(operations=to_vae_channels, input_columns=["video"],
                                  num_parallel_workers=1, python_multiprocessing=False)
    num_images = cfg.data_config.use_image_num  # joint training: the clip's frames, then the images
    latent_shape = (cfg.num_frames + num_images, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    drop_prob = {"class": cfg.class_dropout_prob, "text": cfg.caption_dropout_prob}.get(cfg.condition, 0.0)
    noise = StepNoise(cfg.seed, ctx.rank, start_step, cfg.train_batch_size, latent_shape, num_timesteps,
                      sample_latents=cfg.vae_sample and not cfg.pixel_space and not cfg.trains_on_cache,
                      num_ranks=ctx.group_size, drop_prob=drop_prob, timestep_power=cfg.timestep_power)
    dataset = dataset.map(operations=noise, input_columns=["video"], output_columns=["video", *RANDOM_COLUMNS],
                          num_parallel_workers=1, python_multiprocessing=False)
    condition_columns = []
    if cfg.condition == "class":
        condition_columns = ["label"]
        if num_images:  # the images' labels, and their dropout draw
            drop = ImageConditionDrop(cfg.seed, ctx.rank, start_step, cfg.train_batch_size, cfg.class_dropout_prob,
                                      num_ranks=ctx.group_size)
            dataset = dataset.map(operations=drop, input_columns=["image_labels"],
                                  output_columns=list(IMAGE_COLUMNS), num_parallel_workers=1,
                                  python_multiprocessing=False)
            condition_columns += list(IMAGE_COLUMNS)
    elif cfg.is_text_model and cfg.trains_on_cache:  # T5 states and masks stored with the latents
        check_text_cache(cfg, info)
        condition_columns = list(CACHED_TEXT_COLUMNS)
    elif cfg.is_text_model:  # the captions tokenized here, on the host; T5 runs in the step
        from latte.text.tokenizer import T5Tokenizer

        tokens = CaptionTokens(T5Tokenizer(cfg.text_encoder_files()[1]), info.captions, cfg.max_text_length)
        dataset = dataset.map(operations=tokens, input_columns=["caption_id"], output_columns=list(TEXT_COLUMNS),
                              num_parallel_workers=1, python_multiprocessing=False)
        condition_columns = list(TEXT_COLUMNS)
    if cfg.is_text_model and num_images:  # captions (B, 1+n, ...): the draw that drops the images' captions
        drop = ImageConditionDrop(cfg.seed, ctx.rank, start_step, cfg.train_batch_size, cfg.caption_dropout_prob,
                                  num_ranks=ctx.group_size)
        dataset = dataset.map(operations=drop, input_columns=["text_mask"],
                              output_columns=["text_mask", IMAGE_DROP_COLUMN], num_parallel_workers=1,
                              python_multiprocessing=False)
        condition_columns.append(IMAGE_DROP_COLUMN)
    return dataset.project(["video", *RANDOM_COLUMNS] + condition_columns), info


def check_text_cache(cfg, info):
    """A cache with text must hold T5 states of max_text_length tokens (DatasetInfo.text_encoder, its record)."""
    record = info.text_encoder
    if not record:
        raise ConfigError(f"condition 'text' needs the captions' T5 states, but the cache in "
                          f"{cfg.data_config.data_folder!r} has none: write it again with condition text")
    if record.get("max_length") != cfg.max_text_length:
        raise ConfigError(f"max_text_length={cfg.max_text_length} but the cache in {cfg.data_config.data_folder!r} "
                          f"holds {record.get('max_length')} T5 tokens per caption: set max_text_length: "
                          f"{record.get('max_length')}")
