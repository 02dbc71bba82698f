"""Building a latent cache: every frame of every video -> VAE latents, written by a crash-safe cache writer.

Videos are listed and transformed exactly as training reads them (same data config, centre crop and resize to
image_size, [-1, 1]) but whole, at stride 1 and never flipped, so training can later take clips of any length
and stride. Video i of the listing (its id) is cached by rank i % world_size. A video that cannot be decoded
is skipped and recorded; any other failure stops the run with the index to continue from.

Condition "text" also stores the T5 states and mask of each video's caption (videos without one are skipped
when listing). T5 encodes the captions of fixed groups of a rank's videos (text_batch_size each, counted from
the start of the listing), so a resumed or restarted run computes every caption in the batch it would have had.
"""
import contextlib
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from latte.config import ConfigError
from latte.data.cache import CACHE_FORMAT, CACHE_VERSION, HEADER, TEXT_MASK_DTYPE, TEXT_RECORD
from latte.data.config import MINDRECORD
from latte.data.cache_writers import CaptionText, MindRecordCacheWriter, NumpyCacheWriter, check_page_size
from latte.data.errors import VideoReadError
from latte.data.index import build_video_index
from latte.data.readers import short_reason, video_read_errors
from latte.data.sources import get_source_type
from latte.data.transforms import as_size, to_channels
from latte.env import progress
from latte.models.vae_encoder import LatentEncoder
from latte.random_streams import Stream

logger = logging.getLogger(__name__)

DECODE_CHUNK_FRAMES = 128  # frames decoded at once: bounds memory for long videos (sequential decoders re-seek)
LISTING_CHUNK = 1  # build_video_index with 1-frame clips: every video with a frame is listed


# ---------------------------------------------------------------------------------------------------------
# What is cached: the listing, and the header describing the cache
# ---------------------------------------------------------------------------------------------------------

def list_source_videos(cfg):
    """Every video of the data config (after the filter list), in the training order; no video is opened."""
    data_config = dataclasses.replace(cfg.data_config, scan_videos=False)
    return build_video_index(data_config, LISTING_CHUNK, cfg.image_size, with_labels=cfg.condition == "class",
                             with_captions=cfg.condition == "text")


def _sha1(lines):
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()


def _source_description(data_config, index, with_captions=False):
    folder = data_config.data_folder
    synthetic = None
    if data_config.train_data_type == "synthetic":
        synthetic = [data_config.num_videos, data_config.video_length, list(data_config.synthetic_shapes)]
        synthetic += ["captions"] if data_config.synthetic_captions else []
    description = {
        "data_folder": os.path.abspath(folder) if folder else "", "train_data_type": data_config.train_data_type,
        "filter_list": data_config.filter_list, "class_from": data_config.class_from, "synthetic": synthetic,
        "num_videos": len(index.entries), "names_sha1": _sha1(e.name for e in index.entries)}
    if with_captions:  # other captions are another cache
        description["caption_file"] = os.path.abspath(data_config.caption_file) if data_config.caption_file else None
        description["captions_sha1"] = _sha1(e.caption for e in index.entries)
    return description


def cache_header(cfg, index, vae, latent_shape, captions=None):
    """The first manifest line: everything that decides the cached values (resuming runs must match it).
    captions: the CaptionEncoder of condition text."""
    text = {} if captions is None else {TEXT_RECORD: captions.record, "text_tokenizer": captions.tokenizer,
                                        "text_encoder_dtype": captions.dtype}
    return {**text, "record": HEADER, "format": CACHE_FORMAT, "version": CACHE_VERSION,
            "file_type": cfg.cache_file_type,
            "dtype": cfg.save_data_type, "latents": "sample" if cfg.sample_latents else "mean",
            "noise_seed": cfg.seed if cfg.sample_latents else None, "scale_factor": cfg.latent_scale,
            "image_size": list(as_size(cfg.image_size)), "latent_shape": list(latent_shape),
            "vae_checkpoint": os.path.abspath(cfg.vae_checkpoint), "vae_config": vae.config.to_dict(),
            "vae_dtype": cfg.vae_dtype, "source": _source_description(cfg.data_config, index, captions is not None),
            "condition": cfg.condition, "class_names": list(index.class_names),
            "segment_frames": cfg.segment_frames if cfg.cache_file_type == MINDRECORD else None}


# ---------------------------------------------------------------------------------------------------------
# Captions -> T5 states (condition text)
# ---------------------------------------------------------------------------------------------------------

@dataclass
class CaptionEncoder:
    """T5 and its tokenizer as the cache uses them: texts -> (states (N, L, D) float32, mask (N, L) int32)."""
    encode: Callable  # e.g. functools.partial(latte.text_to_video.encode_texts, tokenizer, t5, max_length=L)
    record: dict  # the header's text record {"text_encoder", "width", "max_length"}
    tokenizer: str  # the tokenizer's path (header key text_tokenizer)
    dtype: str  # T5's compute dtype name (header key text_encoder_dtype)
    batch_size: int  # captions per encode call (the last group is padded with "")


def load_caption_encoder(cfg, device_target):
    """The CaptionEncoder of cfg's text encoder keys (latte.text.options.CaptionEncoderOptions), T5 loaded frozen."""
    from latte.env import dtype_name
    from latte.models import load_t5
    from latte.text.tokenizer import T5Tokenizer
    from latte.text_to_video import encode_texts

    text_encoder, tokenizer_path = cfg.text_encoder_files()
    dtype = dtype_name(cfg.text_encoder_dtype, device_target)
    t5 = load_t5(text_encoder, dtype)
    tokenizer = T5Tokenizer(tokenizer_path)
    record = {"text_encoder": os.path.abspath(text_encoder), "width": int(t5.config.d_model),
              "max_length": cfg.max_text_length}
    encode = functools.partial(encode_texts, tokenizer, t5, max_length=cfg.max_text_length)
    return CaptionEncoder(encode, record, os.path.abspath(tokenizer_path), dtype, cfg.text_batch_size)


class GroupedCaptions:
    """The CaptionText of a video, its caption encoded with those of its group: this rank's videos of the listing
    in order, text_batch_size per group. A group is encoded when its first video is asked for (only the current
    group is held), so memory does not grow with the dataset."""

    def __init__(self, encoder, entries, ids, store_dtype):
        self.encoder = encoder
        self.entries = entries
        self.ids = ids  # every video id of this rank, from the start of the listing
        self.group_of = {video_id: n // encoder.batch_size for n, video_id in enumerate(ids)}
        self.store_dtype = store_dtype
        self._group = (None, [], None, None)  # (group number, its ids, states, mask)

    def __call__(self, video_id):
        number = self.group_of[video_id]
        if self._group[0] != number:
            size = self.encoder.batch_size
            members = self.ids[number * size:(number + 1) * size]
            texts = [self.entries[i].caption for i in members]
            states, mask = self.encoder.encode(texts + [""] * (size - len(texts)))  # (size, L, D), (size, L)
            self._group = (number, members, states, mask)
        _, members, states, mask = self._group
        row = members.index(video_id)
        return CaptionText(self.entries[video_id].caption, states[row].astype(self.store_dtype),
                           mask[row].astype(TEXT_MASK_DTYPE))


# ---------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------

def read_video_chunks(source, entry, data_config, image_size, chunk=DECODE_CHUNK_FRAMES):
    """Yields all frames of a video, transformed like training without flip: float32 (k, 3, H, W) in [-1, 1].

    Raises VideoReadError when the video cannot be opened or decoded (whatever the decoder raised).
    """
    with video_read_errors():
        reader = source.open_video(entry, data_config, image_size)
    with video_read_errors(), contextlib.closing(reader):
        total = int(reader.num_frames)
        if total < 1:
            raise VideoReadError("the video has no frames")
        for start in range(0, total, chunk):
            frames = reader.get_frames(range(start, min(total, start + chunk)))  # uint8 (k, H0, W0, C)
            yield source.to_sample(frames, image_size, None, False)  # -> float32 (k, 3, H, W)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------

@dataclass
class CacheReport:
    start_index: int  # --resume_cache_index of this run
    assigned: int  # videos of this rank from start_index on
    already_cached: int  # of those, cached by an earlier run (not touched)
    saved: int  # cached by this run
    failed: List[Tuple[int, str, str]]  # (id, name, reason) skipped by this run
    next_index: Optional[int]  # where to continue when this run stopped early (max_videos), else None

    def summary(self):
        text = (f"started at index {self.start_index}: saved {self.saved} videos, failed {len(self.failed)}"
                f" ({self.already_cached} of this rank's {self.assigned} were cached already)")
        if self.next_index is not None:
            text += f"; continue with --resume_cache_index {self.next_index}"
        return text


class CacheInterrupted(RuntimeError):
    """The run stopped on an error that is not one video's: says what was saved and where to continue."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def text_bytes(header):
    """Bytes of one caption's states and mask in a cache with this header (0 without text)."""
    text = header.get(TEXT_RECORD)
    if not text:
        return 0
    return text["max_length"] * (text["width"] * np.dtype(header["dtype"]).itemsize
                                 + np.dtype(TEXT_MASK_DTYPE).itemsize)


def make_writer(cfg, rank, header):
    if cfg.cache_file_type == MINDRECORD:
        page = check_page_size(cfg.max_page_size, cfg.segment_frames, header["latent_shape"], cfg.save_data_type,
                               text_bytes(header))
        return MindRecordCacheWriter(cfg.cache_folder, rank, header, cfg.videos_per_file, page)
    return NumpyCacheWriter(cfg.cache_folder, rank, header)


def latent_shape_of(vae, image_size):
    height, width = as_size(image_size)
    factor = vae.config.downsample_factor
    if height % factor or width % factor:
        raise ConfigError(f"image_size {height}x{width} is not a multiple of the VAE's downsampling {factor}")
    return vae.config.latent_channels, height // factor, width // factor


def build_cache(cfg, vae, rank=0, world_size=1, show_progress=True, captions=None):
    """Caches this rank's videos of cfg into cfg.cache_folder. Returns a CacheReport; raises CacheInterrupted.
    captions: the CaptionEncoder (load_caption_encoder) when cfg.condition is "text"."""
    if (cfg.condition == "text") != (captions is not None):
        raise ValueError(f"condition {cfg.condition!r} with captions={captions!r}: condition 'text' needs the "
                         "CaptionEncoder of load_caption_encoder, the others none")
    index = list_source_videos(cfg)
    source = get_source_type(cfg.data_config.train_data_type)
    latent_shape = latent_shape_of(vae, cfg.image_size)
    header = cache_header(cfg, index, vae, latent_shape, captions)
    writer = make_writer(cfg, rank, header)
    encoder = LatentEncoder(vae, cfg.latent_scale, cfg.frames_per_batch, latent_shape)
    channels = vae.config.in_channels  # 1 for a grayscale VAE from tools/train_vae.py
    store = np.dtype(cfg.save_data_type)
    ranks_videos = list(range(rank, len(index.entries), world_size))
    caption_text = None if captions is None else GroupedCaptions(captions, index.entries, ranks_videos, store)

    mine = [i for i in ranks_videos if i >= cfg.resume_cache_index]
    todo = [i for i in mine if i not in writer.done]
    report = CacheReport(cfg.resume_cache_index, len(mine), len(mine) - len(todo), 0, writer.failed, None)
    if cfg.max_videos is not None and len(todo) > cfg.max_videos:
        report.next_index = todo[cfg.max_videos]
        todo = todo[:cfg.max_videos]
    logger.info("cache: %d videos listed; rank %d/%d caches %d from index %d (%d already cached) into %s (%s, %s)",
                len(index.entries), rank, world_size, len(todo), cfg.resume_cache_index, report.already_cached,
                cfg.cache_folder, cfg.cache_file_type, cfg.save_data_type)
    # updated by hand: a bar iterated over todo closes itself after the last video, before the mindrecord writer's
    # final commit, and would end showing saved=0
    bar = progress(total=len(todo), desc=f"cache rank {rank}" if world_size > 1 else "cache", unit="video",
                   disable=not show_progress)
    current = None
    try:
        for current in todo:
            entry = index.entries[current]
            noise_rng = np.random.default_rng([cfg.seed, Stream.CACHE_POSTERIOR, current]) if cfg.sample_latents else None
            chunks = []
            try:
                for pixels in read_video_chunks(source, entry, cfg.data_config, cfg.image_size):
                    chunks.append(encoder(to_channels(pixels, channels, axis=1), noise_rng))  # as training
            except VideoReadError as exc:
                logger.warning("cache: skipping video %d %s (%s)", current, entry.name, exc)
                writer.add_failure(current, entry.name, str(exc))
                bar.update(1)
                continue
            label = None if index.labels is None else index.labels[current]
            text = None if caption_text is None else caption_text(current)
            writer.add(current, entry.name, np.concatenate(chunks).astype(store), label, text)
            report.saved = writer.saved
            bar.set_postfix(encoded=writer.saved + len(writer.pending), saved=writer.saved,
                            failed=len(writer.failed), refresh=False)  # mindrecord saves a file of videos at once
            bar.update(1)
        current = None
        writer.close()
        report.saved = writer.saved
        bar.set_postfix(encoded=writer.saved, saved=writer.saved, failed=len(writer.failed))
    except BaseException as exc:  # also KeyboardInterrupt: say where to continue
        resume_at = _stop(writer, current)
        report.saved = writer.saved
        report.next_index = resume_at
        raise CacheInterrupted(f"embedding cache stopped ({short_reason(exc)}{_disk_note(exc, cfg.cache_folder)}); "
                               + report.summary(), report) from exc
    finally:
        bar.close()
    report.saved = writer.saved
    return report


def _disk_note(exc, folder):
    """', N MiB free in <folder>' when the failure is about disk space, else ''."""
    about_disk = getattr(exc, "errno", None) == errno.ENOSPC or "disk" in str(exc).lower()
    if not about_disk or not os.path.isdir(folder):
        return ""
    return f"; {shutil.disk_usage(folder).free / 2**20:.1f} MiB free in {folder}: free some space and continue"


def _stop(writer, current):
    """Commits what can be committed after a failure; returns the first video index that is not saved."""
    try:
        writer.close()
        unsaved = [] if current is None else [current]
    except Exception as exc:  # the writer itself failed: its open chunk is lost
        logger.warning("cache: could not commit the open file (%s); its videos will be cached again",
                       short_reason(exc))
        unsaved = writer.pending + ([] if current is None else [current])
        abandon = getattr(writer, "abandon", None)
        if abandon is not None:
            abandon()
    return min(unsaved) if unsaved else None
