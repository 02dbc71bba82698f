"""Training from a latent cache: the data types "numpy" and "mindrecord" of the video pipeline.

Training uses the video pipeline unchanged (`create_video_dataset`): the cache types are entries of
SOURCE_TYPES whose readers return latents (F, C, h, w) instead of pixels. Video names and their order are
those of the source videos, so a clip of the cache is the encoding of the clip the video pipeline draws for
the same (seed, epoch, video) -- without the random flip, which caches cannot apply. A text cache's samples
carry its caption's T5 states and mask (SourceType.read_text) where the video pipeline has caption_id. The
on-disk format is described in latte/data/cache.py.
"""
import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from latte.data.cache import (
    ROW_FRAMES, ROW_LATENTS, ROW_SEGMENT, ROW_TEXT_MASK, ROW_TEXT_STATES, ROW_VIDEO, TEXT_MASK, TEXT_MASK_DTYPE,
    TEXT_RECORD, TEXT_STATES, read_cache_index,
)
from latte.data.config import CACHE_DATA_TYPES, MINDRECORD, NUMPY
from latte.data.dataset import DEFAULT_SEED, create_video_dataset
from latte.data.errors import DataError, VideoReadError
from latte.data.readers import short_reason
from latte.data.sources import SOURCE_TYPES, SourceType, VideoEntry, check_data_folder
from latte.data.transforms import as_size

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Readers: the cached latents of one video, the interface of latte.data.readers (num_frames, get_frames, close)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CachedVideoEntry(VideoEntry):
    video_id: int = 0  # position of the video in the cache's source listing
    latent_shape: Tuple[int, ...] = ()  # (C, h, w) per frame
    dtype: str = "float32"  # stored dtype
    segment_frames: int = 0  # mindrecord: frames per row
    text_file: str = ""  # numpy text caches: the .text.npz of the caption's states and mask
    text_shape: Tuple[int, ...] = ()  # text caches: (L, D) of the caption's states


class NumpyLatentReader:
    """One .npy per video, memory-mapped: get_frames reads only the frames asked for."""

    def __init__(self, entry):
        try:
            self._array = np.load(entry.path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VideoReadError(f"cannot read cached latents {entry.path} ({short_reason(exc)})") from exc
        expected = (entry.num_frames,) + tuple(entry.latent_shape)
        if self._array.shape != expected:
            raise VideoReadError(f"{entry.path} holds shape {self._array.shape}, the manifest says {expected}")
        self.num_frames = entry.num_frames

    def get_frames(self, indices):
        return np.asarray(self._array[np.asarray(indices, dtype=np.int64)])  # (F, C, h, w)

    def close(self):
        self._array = None


_PAGES = {}  # mindrecord path -> (pid, mtime, MindPage, lock): one open handle per file and process
_PAGES_LOCK = threading.Lock()


def _mind_page(path):
    from mindspore.mindrecord import MindPage

    mtime = os.stat(path).st_mtime_ns
    with _PAGES_LOCK:
        pid, stamp, page, lock = _PAGES.get(path, (None, None, None, None))
        if (pid, stamp) != (os.getpid(), mtime):  # a forked worker, or a file written again
            page = MindPage(path)
            page.category_field = ROW_VIDEO
            lock = threading.Lock()
            _PAGES[path] = (os.getpid(), mtime, page, lock)
        return page, lock


class MindRecordLatentReader:
    """The rows (segments) of one video in a mindrecord chunk, read by video id with MindPage."""

    def __init__(self, entry):
        self.entry = entry
        self.num_frames = entry.num_frames
        try:
            self._page, self._lock = _mind_page(entry.path)
        except Exception as exc:  # MindSpore raises RuntimeError/MRM* errors for missing or damaged files
            raise VideoReadError(f"cannot open {entry.path} ({short_reason(exc)})") from exc

    def _row(self, segment):
        e = self.entry
        try:
            with self._lock:
                rows = self._page.read_at_page_by_name(str(e.video_id), segment, 1)
        except Exception as exc:
            raise VideoReadError(f"{e.path}: cannot read segment {segment} of video {e.video_id} "
                                 f"({short_reason(exc)})") from exc
        if not rows or rows[0][ROW_SEGMENT] != segment or rows[0][ROW_VIDEO] != e.video_id:
            raise VideoReadError(f"{e.path}: row {segment} of video {e.video_id} is not its segment {segment}")
        return rows[0]

    def _segment(self, segment):
        row = self._row(segment)
        return np.frombuffer(row[ROW_LATENTS], dtype=self.entry.dtype).reshape(
            (row[ROW_FRAMES],) + tuple(self.entry.latent_shape))

    def get_text(self):
        """The caption's (states (L, D), mask (L,)) in the stored dtypes, from the video's first row."""
        row = self._row(0)
        length, _ = self.entry.text_shape
        states = np.frombuffer(row[ROW_TEXT_STATES], dtype=self.entry.dtype)
        mask = np.frombuffer(row[ROW_TEXT_MASK], dtype=TEXT_MASK_DTYPE)
        return states.reshape(self.entry.text_shape), mask.reshape(length)

    def get_frames(self, indices):
        size = self.entry.segment_frames
        indices = [int(i) for i in indices]
        segments = {s: self._segment(s) for s in sorted({i // size for i in indices})}
        return np.stack([segments[i // size][i % size] for i in indices])  # (F, C, h, w)

    def close(self):
        pass


def list_cached_videos(data_config, image_size=None):
    """The cached videos of data_config.data_folder as entries for build_video_index (frame counts known)."""
    folder = data_config.data_folder
    check_data_folder(folder, "a latent cache written by tools/embedding_cache.py")
    header = read_cache_index(folder).header
    kind = data_config.train_data_type
    if header["file_type"] != kind:
        raise DataError(f"data_config.data_folder={folder!r} holds a {header['file_type']!r} cache but "
                        f"data_config.train_data_type is {kind!r}: set train_data_type: {header['file_type']}")
    if image_size is not None and as_size(image_size) != tuple(header["image_size"]):
        raise DataError(f"the cache in {folder!r} holds {header['image_size'][0]}x{header['image_size'][1]} frames "
                        f"but training asks image_size {image_size}: set image_size: {header['image_size'][0]} or "
                        "cache the videos again at that size")
    if data_config.random_flip:
        raise DataError("data_config.random_flip cannot apply to cached latents (frames are flipped before encoding): "
                        "set random_flip: false when training from a cache")
    classes = header.get("class_names") or []
    text = header.get(TEXT_RECORD)
    entries = []
    for v in read_cache_index(folder).videos:
        label = v.get("label")
        entries.append(CachedVideoEntry(
            name=v["name"], path=os.path.join(folder, v["file"]), num_frames=v["frames"],
            class_name=classes[label] if label is not None else None, caption=v.get("caption"), video_id=v["id"],
            latent_shape=tuple(header["latent_shape"]), dtype=header["dtype"],
            segment_frames=header.get("segment_frames") or 0,
            text_file=os.path.join(folder, v["text_file"]) if v.get("text_file") else "",
            text_shape=(text["max_length"], text["width"]) if text else ()))
    return entries


def cache_class_names(data_config):
    """The cache's classes (asked for only when training is class-conditional); an unlabelled cache is an error."""
    header = read_cache_index(data_config.data_folder).header
    if header.get("condition") != "class":
        raise DataError(f"condition 'class' needs labels, but the cache in {data_config.data_folder!r} was written "
                        f"for condition {header.get('condition')!r}: cache the videos again with --condition class")
    return list(header["class_names"])


def _text_sample(states, mask, entry):
    """Stored (states, mask) -> (float32 (L, D), int32 (L,)), checked against the header's shape."""
    if states.shape != tuple(entry.text_shape) or mask.shape != tuple(entry.text_shape[:1]):
        raise VideoReadError(f"the caption states of {entry.name} have shapes {states.shape}, {mask.shape}; the "
                             f"cache header says {tuple(entry.text_shape)}")
    return np.asarray(states, np.float32), np.asarray(mask, np.int32)


def read_numpy_text(entry):
    """A numpy text cache's caption columns of a video: text_states float32 (L, D), text_mask int32 (L,)."""
    try:
        with np.load(entry.text_file) as stored:
            states, mask = stored[TEXT_STATES], stored[TEXT_MASK]
    except (OSError, ValueError, KeyError) as exc:
        raise VideoReadError(f"cannot read cached caption states {entry.text_file} ({short_reason(exc)})") from exc
    return _text_sample(states, mask, entry)


def read_mindrecord_text(entry):
    """A mindrecord text cache's caption columns of a video, from its first row."""
    return _text_sample(*MindRecordLatentReader(entry).get_text(), entry)


def latents_to_sample(frames, image_size=None, rng=None, random_flip=False):
    """Cached latents (F, C, h, w) in the stored dtype -> float32; they are already cropped, resized, scaled."""
    return np.asarray(frames, dtype=np.float32)


def open_numpy_latents(entry, data_config, image_size):
    return NumpyLatentReader(entry)


def open_mindrecord_latents(entry, data_config, image_size):
    return MindRecordLatentReader(entry)


TEXT_COLUMNS = ("text_states", "text_mask")  # what condition "text" adds to a cache's "video"
CACHE_SOURCE_TYPES = {
    NUMPY: SourceType(list_cached_videos, open_numpy_latents, scannable=False, to_sample=latents_to_sample,
                      class_names=cache_class_names, text_columns=TEXT_COLUMNS, read_text=read_numpy_text),
    MINDRECORD: SourceType(list_cached_videos, open_mindrecord_latents, scannable=False,
                           to_sample=latents_to_sample, class_names=cache_class_names, text_columns=TEXT_COLUMNS,
                           read_text=read_mindrecord_text),
}
SOURCE_TYPES.update(CACHE_SOURCE_TYPES)


# ---------------------------------------------------------------------------------------------------------
# The training dataset
# ---------------------------------------------------------------------------------------------------------

def check_cache_fits(header, folder, latent_shape=None, scale_factor=None):
    """Raises DataError when a cache cannot feed a model expecting latent_shape (C, h, w) scaled by scale_factor."""
    if latent_shape is not None and tuple(latent_shape) != tuple(header["latent_shape"]):
        raise DataError(f"the cache in {folder!r} holds latents of shape (C, h, w) = {tuple(header['latent_shape'])} "
                        f"but the model expects {tuple(latent_shape)} (image_size / VAE downsampling, latent "
                        "channels): train with the image size and VAE the cache was written with")
    if scale_factor is not None and not np.isclose(scale_factor, header["scale_factor"], rtol=1e-6, atol=0):
        raise DataError(f"the cache in {folder!r} was scaled by {header['scale_factor']} but sd_scale_factor is "
                        f"{scale_factor}: set sd_scale_factor: {header['scale_factor']}")


def describe_cache(header, index):
    return (f"{header['file_type']} cache {header['dtype']} {header['latents']} latents "
            f"{'x'.join(map(str, header['latent_shape']))} of {header['image_size'][0]}x{header['image_size'][1]} "
            f"frames (VAE {header['vae_checkpoint']}, scale {header['scale_factor']}): {len(index.videos)} videos "
            f"of {header['source']['num_videos']} listed, {len(index.failed)} not cached"
            + (f"; captions as T5 states {header[TEXT_RECORD]}" if header.get(TEXT_RECORD) else ""))


def _same_file(a, b):
    """The same file: one path (links resolved), or equal bytes (a copy)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    if not (os.path.isfile(a) and os.path.isfile(b)) or os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 24)
            if chunk != fb.read(1 << 24):
                return False
            if not chunk:
                return True


def create_cache_dataset(data_config, image_size, num_frames, batch_size, *, latent_shape=None, scale_factor=None,
                         vae_checkpoint=None, condition=None, shard_id=0, num_shards=1, seed=DEFAULT_SEED,
                         drop_remainder=True, start_step=0):
    """The training pipeline over a latent cache. Returns (dataset, DatasetInfo) like `create_video_dataset`.

    dataset columns: "video" float32 (B, F, C, h, w) -- scaled latents, the input of LatteTrainLoss without a
    VAE -- and "label" int32 (B,) when condition == "class", or "text_states" float32 (B, L, D) and "text_mask"
    int32 (B, L) when condition == "text" ((B, 1 + n, L, D) and (B, 1 + n, L) with data_config.use_image_num = n:
    the clip's caption, then each image's; a cache written with condition text; info.text_encoder is then its
    header's text record {"text_encoder", "width", "max_length"}, info.captions the cached captions). latent_shape (C, h, w) and scale_factor, when
    given, must match the cache; a vae_checkpoint other than the cache's (which decodes samples) is a warning.
    Clips, shuffling, sharding and resume (start_step) follow the video pipeline's
    contract (latte.data.dataset); videos shorter than a clip are skipped with a warning.
    """
    if data_config.train_data_type not in CACHE_DATA_TYPES:
        raise DataError(f"data_config.train_data_type={data_config.train_data_type!r} is not a cache type "
                        f"{CACHE_DATA_TYPES}: use create_video_dataset")
    index = read_cache_index(data_config.data_folder)
    check_cache_fits(index.header, data_config.data_folder, latent_shape, scale_factor)
    text = index.header.get(TEXT_RECORD) or {}
    if condition == "text" and not text:
        raise DataError(f"condition 'text' needs caption states, but the cache in {data_config.data_folder!r} was "
                        f"written for condition {index.header.get('condition')!r}: rebuild it with "
                        "tools/embedding_cache.py --condition text --text_encoder T5.ckpt --tokenizer T5_TOKENIZER")
    if vae_checkpoint and not _same_file(vae_checkpoint, index.header["vae_checkpoint"]):
        logger.warning("data: the cache was encoded with %s but vae_checkpoint is %s (used to decode samples): "
                       "make sure they are the same VAE", index.header["vae_checkpoint"], vae_checkpoint)
    logger.info("data: %s", describe_cache(index.header, index))
    dataset, info = create_video_dataset(data_config, image_size, num_frames, batch_size, condition=condition,
                                         shard_id=shard_id, num_shards=num_shards, seed=seed,
                                         drop_remainder=drop_remainder, start_step=start_step)
    not_cached = [(f["name"], f"not cached: {f['reason']}") for f in index.failed]
    return dataset, dataclasses.replace(info, skipped=sorted(info.skipped + not_cached), text_encoder=dict(text))
