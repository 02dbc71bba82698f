"""The training pipeline: a mindspore.dataset yielding batches of clips, sharded, shuffled, resumable.

Determinism. Every sample is addressed by a key = epoch * samples_per_shard + position. From the key alone
(and the seed) follow: the epoch's video order (a permutation seeded by (seed, epoch)), the video at
this rank's position, the clip start and flip (seeded by (seed, epoch, video)), and the replacement for
a video that turns out unreadable. Worker count, worker scheduling and prefetching change nothing.
Clips depend on (seed, epoch, video) only, so they are identical for any number of shards.

Text (condition "text"). Every usable video has a caption (latte/data/captions.py; captionless videos are
skipped at build): a sample's caption_id is the index of the video it shows, DatasetInfo.captions[caption_id] its
caption. A cache's samples carry the cached T5 states instead (SourceType.read_text, latte/data/cache_dataset.py).

Sharding. Epoch order position p goes to shard p % num_shards; each rank gets N // num_shards videos per
epoch (the up to num_shards - 1 left over change every epoch), so shards are disjoint and cover the data.

Resume. start_step = batches this rank already consumed. Batch k of the resumed pipeline equals batch
start_step + k of an uninterrupted one (same seed, shards and batch size), across epoch boundaries, and
skipped batches are never decoded. Every mindspore epoch still has steps_per_epoch batches, so after a
mid-epoch resume a mindspore epoch straddles two data epochs: count steps, not mindspore epochs
(`iterate_batches` runs the passes back to back; stop at the step budget). The data epoch of global step s
is s // steps_per_epoch.
(mindspore's `dataset.skip(n)` instead decodes and drops n rows at the start of EVERY epoch: not a resume.)
"""
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from latte.data.errors import DataError, VideoReadError
from latte.data.index import build_video_index
from latte.data.joint_images import draw_images, read_frame_list
from latte.data.readers import video_read_errors
from latte.data.sources import get_source_type
from latte.data.transforms import as_size, sample_clip_indices
from latte.random_streams import Stream

logger = logging.getLogger(__name__)

CONDITIONS = (None, "class", "text")
DEFAULT_SEED = 0
MAX_SUBSTITUTE_ATTEMPTS = 16  # consecutive unreadable videos tolerated for one sample


@dataclass
class DatasetInfo:
    num_videos: int  # usable videos (all shards)
    samples_per_shard: int  # videos this rank sees per epoch: num_videos // num_shards
    steps_per_epoch: int  # batches per full epoch on this rank
    batch_size: int
    start_epoch: int  # epoch the pipeline starts in (start_step // steps_per_epoch)
    class_names: List[str]  # label i <-> class_names[i]; empty when condition is None
    skipped: List[Tuple[str, str]]  # (video, reason) dropped at build time (failures found later are logged)
    captions: List[str] = field(default_factory=list)  # condition "text": caption_id i <-> captions[i]
    text_encoder: dict = field(default_factory=dict)  # a text cache's {"text_encoder", "width", "max_length"}


class ClipSource:
    """Random-access source for GeneratorDataset: key -> (video float32 (F, 3, H, W), then label int32 for
    condition "class", caption_id int32 (or a cache's text columns) for condition "text"). With
    data_config.use_image_num = n > 0 (joint training) the video is (F + n, 3, H, W), the clip then n images
    of random videos (latte.data.joint_images), a class sample ends with their labels int32 (n,), and a text
    sample's text columns hold the clip's caption then the images': (1 + n, ...)."""

    def __init__(self, data_config, index, num_frames, image_size, seed, shard_id, num_shards, condition=None):
        self.data_config = data_config
        self.source = get_source_type(data_config.train_data_type)
        self.entries = index.entries
        self.labels = None if index.labels is None else np.asarray(index.labels, np.int32)
        self.condition = condition
        self.num_frames = num_frames
        self.image_size = as_size(image_size)
        self.seed = seed
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.samples_per_shard = len(self.entries) // num_shards
        self.num_images = data_config.use_image_num  # image-video joint training (latte.data.joint_images)
        self.frame_list = (read_frame_list(data_config, index.class_names if condition == "class" else None)
                           if self.num_images and data_config.frame_data_txt else None)
        self.failures = {}  # video index -> reason, for failures found in this process
        self._order = (None, None)  # (epoch, permutation) cache

    def __len__(self):
        return self.samples_per_shard

    def epoch_order(self, epoch):
        """Video indices in the order epoch `epoch` visits them (all shards)."""
        if self._order[0] != epoch:
            n = len(self.entries)
            order = (np.random.default_rng([self.seed, Stream.DATA_SHUFFLE, epoch]).permutation(n)
                     if self.data_config.shuffle else np.arange(n))
            self._order = (epoch, order)
        return self._order[1]

    def video_at(self, key):
        """(epoch, global position, video index) that sample key addresses on this shard."""
        epoch, position = divmod(int(key), self.samples_per_shard)
        global_position = position * self.num_shards + self.shard_id
        return epoch, global_position, int(self.epoch_order(epoch)[global_position])

    def load_clip(self, video_index, epoch=0):
        """The clip of video video_index for epoch: float32 (F, 3, H, W) in [-1, 1]. Raises VideoReadError."""
        entry = self.entries[video_index]
        rng = np.random.default_rng([self.seed, Stream.DATA_CLIP, epoch, video_index])
        reader = self.source.open_video(entry, self.data_config, self.image_size)
        with video_read_errors(), contextlib.closing(reader):
            indices = sample_clip_indices(reader.num_frames, self.num_frames, self.data_config.sample_stride, rng)
            frames = reader.get_frames(indices)
        return self.source.to_sample(frames, self.image_size, rng, self.data_config.random_flip)

    def load_text(self, video_index):
        """The text columns of a video: (caption_id int32,), or what the source reads (a cache's T5 states)."""
        if self.source.read_text is None:
            return (np.int32(video_index),)
        with video_read_errors():
            return tuple(self.source.read_text(self.entries[video_index]))

    def record_image_failure(self, path, exc):
        logger.warning("data: skipping frame_data_txt image %s (%s); another is drawn, deterministically", path, exc)

    def record_failure(self, video_index, exc):
        self.failures[video_index] = str(exc)
        hint = ("" if self.data_config.scan_videos else
                "; data_config.scan_videos: true drops such videos at start")  # a scanned video can fail later too
        logger.warning("data: skipping video %s (%s); a deterministic substitute is used%s",
                       self.entries[video_index].name, exc, hint)

    def __getitem__(self, key):
        epoch, global_position, video_index = self.video_at(key)
        substitutes = np.random.default_rng([self.seed, Stream.DATA_SUBSTITUTE, epoch, global_position])
        for _ in range(MAX_SUBSTITUTE_ATTEMPTS):
            if video_index not in self.failures:
                try:
                    clip = self.load_clip(video_index, epoch)
                    text = self.load_text(video_index) if self.condition == "text" else ()
                    break
                except VideoReadError as exc:
                    self.record_failure(video_index, exc)
            video_index = int(substitutes.integers(len(self.entries)))
        else:
            raise DataError(f"{MAX_SUBSTITUTE_ATTEMPTS} videos in a row were unusable, e.g. "
                            f"{self.entries[video_index].name}: check data_config.data_folder "
                            f"{self.data_config.data_folder!r}")
        if self.num_images:  # joint training: the clip's F frames, then n images of random videos
            images, image_conditions = draw_images(self, epoch, global_position, self.num_images)
            clip = np.concatenate([clip, images])  # (F, C, H, W) + (n, C, H, W) -> (F+n, C, H, W)
            if self.condition == "class":
                return clip, self.labels[video_index], image_conditions
            if self.condition == "text":  # the clip's caption, then the images': each column (...) -> (1+n, ...)
                text = tuple(np.concatenate([np.expand_dims(v, 0), w]) for v, w in zip(text, image_conditions))
        if self.condition == "class":
            return clip, self.labels[video_index]
        return (clip,) + text


class StepSampler:
    """Yields sample keys, samples_per_epoch per mindspore epoch, continuing from start_sample (resume).

    Global sample g (counted from the very start of training on this rank) is position g % samples_per_epoch
    of data epoch g // samples_per_epoch. Every mindspore epoch has the same length (mindspore requires it),
    so after a mid-epoch resume each mindspore epoch straddles two data epochs; the batch sequence is exact.
    mindspore copies the sampler into each pipeline and calls __iter__ once per epoch (plus a few times at
    build time without consuming): the window counter advances only when a window's first key is taken.
    """

    def __init__(self, samples_per_epoch, samples_per_shard, start_sample=0):
        self.samples_per_epoch = samples_per_epoch
        self.samples_per_shard = samples_per_shard
        self.start_sample = start_sample
        self._next_window = 0

    def __len__(self):
        return self.samples_per_epoch

    def __iter__(self):
        def keys():
            first = self.start_sample + self._next_window * self.samples_per_epoch
            self._next_window += 1
            for sample in range(first, first + self.samples_per_epoch):
                epoch, position = divmod(sample, self.samples_per_epoch)
                yield epoch * self.samples_per_shard + position
        return keys()


def _check_arguments(num_frames, batch_size, shard_id, num_shards, seed, start_step, condition):
    if condition not in CONDITIONS:
        raise ValueError(f"condition={condition!r}: the video dataset supports {CONDITIONS}")
    for name, value, low in (("num_frames", num_frames, 1), ("batch_size", batch_size, 1),
                             ("num_shards", num_shards, 1), ("seed", seed, 0), ("start_step", start_step, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id={shard_id} with num_shards={num_shards}: expected 0 <= shard_id < num_shards")


def usable_workers(requested):
    """num_parallel_workers clamped to the CPU cores this process may use (MindSpore refuses more, after the model
    is built: "num_parallel_workers exceeds the boundary"); the clamp is logged."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested > cores:
        logger.info("data_config.num_parallel_workers=%d but this machine has %d CPU core(s): using %d", requested,
                    cores, cores)
        return cores
    return requested


def create_video_dataset(data_config, image_size, num_frames, batch_size, *, condition=None, shard_id=0,
                         num_shards=1, seed=DEFAULT_SEED, drop_remainder=True, start_step=0):
    """Build the training pipeline. Returns (dataset, DatasetInfo).

    dataset columns: "video" float32 (B, F, 3, H, W) in [-1, 1] ((B, F + n, 3, H, W) with
    data_config.use_image_num = n: the clip, then n images of random videos), and "label" int32 (B,) when
    condition == "class" (then "image_labels" int32 (B, n) with images), "caption_id" int32 (B,) when
    condition == "text" (the caption of sample b is info.captions[caption_id[b]]; videos without a caption are
    skipped; with n images (B, 1 + n): the clip's caption, then each image's). image_size: int or (height,
    width). Raises DataError (a ValueError) before any pipeline exists when the data is unusable. See the module
    doc for determinism, sharding and resume.
    """
    import mindspore.dataset as ds

    _check_arguments(num_frames, batch_size, shard_id, num_shards, seed, start_step, condition)
    if data_config.use_image_num and data_config.frame_data_txt and condition == "text":
        raise DataError("data_config.frame_data_txt lists frames without captions; text-to-video joint training "
                        "draws its images from the captioned videos: set frame_data_txt: null")
    index = build_video_index(data_config, num_frames, image_size, with_labels=condition == "class",
                              with_captions=condition == "text")
    source = ClipSource(data_config, index, num_frames, image_size, seed, shard_id, num_shards, condition)
    per_shard = source.samples_per_shard
    steps = per_shard // batch_size if drop_remainder else -(-per_shard // batch_size)
    if steps == 0:
        raise DataError(f"{len(index.entries)} usable videos over {num_shards} shard(s) give {per_shard} per "
                        f"shard, fewer than batch_size={batch_size}: add videos or lower the batch size")
    start_epoch, step_in_epoch = divmod(start_step, steps)
    if step_in_epoch and not drop_remainder:
        raise ValueError(f"start_step={start_step} is inside an epoch of {steps} steps: resuming mid-epoch "
                         "needs drop_remainder=True (batches would be regrouped otherwise)")
    samples_per_epoch = steps * batch_size if drop_remainder else per_shard
    start_sample = start_epoch * samples_per_epoch + step_in_epoch * batch_size
    sampler = StepSampler(samples_per_epoch, per_shard, start_sample)

    workers = usable_workers(data_config.num_parallel_workers)
    extra = {}
    if workers > 1 and data_config.max_rowsize is not None:
        extra["max_rowsize"] = data_config.max_rowsize
    columns = ["video"] + {None: [], "class": ["label"], "text": list(source.source.text_columns)}[condition]
    if data_config.use_image_num and condition == "class":
        columns.append("image_labels")
    dataset = ds.GeneratorDataset(source, column_names=columns, sampler=sampler, num_parallel_workers=workers,
                                  python_multiprocessing=workers > 1, **extra)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    captions = [e.caption for e in index.entries] if condition == "text" else []
    info = DatasetInfo(len(index.entries), per_shard, steps, batch_size, start_epoch, index.class_names,
                       index.skipped, captions)
    return dataset, info


def iterate_batches(dataset, output_numpy=False):
    """Yield the dataset's batches (tuples in column order) forever, epoch after epoch.

    A mindspore iterator raises StopIteration at the end of EVERY epoch, even with num_epochs=-1, so
    `next(dataset.create_tuple_iterator(num_epochs=-1))` in a step loop stops after the first epoch; this
    generator starts the next pass instead. Pair it with start_step to resume: `itertools.islice` it to the
    step budget.
    """
    iterator = dataset.create_tuple_iterator(num_epochs=-1, output_numpy=output_numpy)
    while True:
        yield from iterator  # one mindspore epoch
