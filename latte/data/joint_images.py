"""The images of image-video joint training (the paper's Latte+IMG; official datasets/*_image_datasets.py).

Each sample's clip is followed by data_config.use_image_num single frames drawn from the whole training set:
a video at random (uniformly over the usable videos, the clip's own included), then a frame of it at random
(uniformly over its frames), read by the data type's own reader (video files, frame folders, synthetic videos,
latent caches) and prepared like a clip (centre crop and resize, flip when random_flip; a cache's latents as
stored). Each image keeps its video's label, or its video's caption (text data: its caption_id, or a text cache's
T5 states and mask), which the sample carries after the clip's: (1 + n, ...) text columns. The official draws
uniformly over all frames of the set (its frame list), so long videos weigh more there; here every video weighs
the same, which needs no frame count of every video before training. With data_config.frame_data_txt (the
official frame list) the images are its frames instead, uniformly over its lines, each with its video folder's
class (no captions: text data cannot use it).

Determinism. Attempt k at image j of the sample at (epoch, global position) draws from its own generator
seeded [seed, Stream.DATA_JOINT_IMAGES, epoch, global position, j, k]: the draws depend on neither workers
nor ranks (the global position is the video pipeline's, the same for any number of shards), resume re-draws
them exactly, and an unreadable video costs one attempt whether this process knew it failed or not.
"""
import contextlib
import os
from typing import NamedTuple, Optional, Tuple

import numpy as np

from latte.data.errors import DataError, VideoReadError
from latte.data.readers import FrameFolderReader, video_read_errors
from latte.data.sources import VideoEntry, class_name_of, find_data_file
from latte.data.transforms import preprocess_clip
from latte.random_streams import Stream

MAX_IMAGE_ATTEMPTS = 16  # unreadable videos in a row tolerated for one image


class FrameList(NamedTuple):
    """The frames of data_config.frame_data_txt: image paths, and the class id of each (None: unconditional)."""
    paths: Tuple[str, ...]
    labels: Optional[np.ndarray]


def read_frame_list(data_config, class_names=None):
    """data_config.frame_data_txt read (official train_list.txt: 'video_name/frame.jpg' per line under
    frame_data_path); with class_names, each frame's class is its video folder's, found as the videos' are
    (data_config.class_from: the folder above the video folder, or a UCF101 v_<Class>_gXX_cYY name). A class
    the videos do not have, or an empty list, is a DataError."""
    txt = find_data_file(data_config.frame_data_txt, data_config.data_folder, "frame_data_txt",
                         "the official frame list: one 'video_name/frame.jpg' per line")
    root = data_config.frame_data_path or os.path.dirname(os.path.abspath(txt))
    with open(txt, encoding="utf-8") as f:
        lines = [line.strip().replace("\\", "/") for line in f if line.strip()]
    if not lines:
        raise DataError(f"data_config.frame_data_txt={txt!r} lists no frames")
    paths = tuple(os.path.join(root, line) for line in lines)
    if not class_names:
        return FrameList(paths, None)
    ids = {name: i for i, name in enumerate(class_names)}
    labels = []
    for line, path in zip(lines, paths):
        video = VideoEntry(line.rsplit("/", 1)[0], os.path.dirname(path), frames=(path,))
        name = class_name_of(video, data_config.class_from)
        if name not in ids:
            raise DataError(f"data_config.frame_data_txt line {line!r} is of class {name!r}, which no training video "
                            f"has (class_from: {data_config.class_from}): list frames of the training classes, or "
                            "change class_from")
        labels.append(ids[name])
    return FrameList(paths, np.asarray(labels, np.int32))


def load_image(source, video_index, rng):
    """One random frame of video video_index, prepared like a clip: float32 (1, C, H, W). Raises
    VideoReadError."""
    entry = source.entries[video_index]
    reader = source.source.open_video(entry, source.data_config, source.image_size)
    with video_read_errors(), contextlib.closing(reader):
        frame = int(rng.integers(reader.num_frames))
        frames = reader.get_frames([frame])  # (1, H, W, 3) pixels or (1, C, h, w) latents
    return source.source.to_sample(frames, source.image_size, rng, source.data_config.random_flip)


def load_listed_image(source, frame, rng):
    """Frame `frame` of data_config.frame_data_txt, prepared like a clip: float32 (1, 3, H, W). Raises
    VideoReadError."""
    pixels = FrameFolderReader([source.frame_list.paths[frame]]).get_frames([0])  # (1, H, W, 3)
    return preprocess_clip(pixels, source.image_size, rng, source.data_config.random_flip)


def image_condition(source, item):
    """What image `item` (a video index) brings to its sample: its video's class id (class data), its video's text
    columns (text data: caption_id, or a cache's T5 states and mask), or None (unconditional). Raises
    VideoReadError (a cache's unreadable caption states)."""
    if source.condition == "text":
        return source.load_text(item)
    return None if source.labels is None else source.labels[item]


def stack_conditions(conditions):
    """n images' image_condition -> None, class ids int32 (n,), or a tuple of text columns, each stacked (n, ...)."""
    if conditions[0] is None:
        return None
    if isinstance(conditions[0], tuple):
        return tuple(np.stack(column) for column in zip(*conditions))  # per column: n x (...) -> (n, ...)
    return np.asarray(conditions, np.int32)


def draw_images(source, epoch, global_position, num_images):
    """The images of one sample: (float32 (n, C, H, W), their conditions: stack_conditions of image_condition).
    From the videos, or from source.frame_list (data_config.frame_data_txt; class or unconditional) when it
    has one."""
    listed = source.frame_list
    images, conditions = [], []
    for j in range(num_images):
        for attempt in range(MAX_IMAGE_ATTEMPTS):
            rng = np.random.default_rng([source.seed, Stream.DATA_JOINT_IMAGES, epoch, global_position, j, attempt])
            if listed is not None:
                item = int(rng.integers(len(listed.paths)))
                try:
                    images.append(load_listed_image(source, item, rng))
                    conditions.append(None if listed.labels is None else listed.labels[item])
                    break
                except VideoReadError as exc:
                    source.record_image_failure(listed.paths[item], exc)
                    continue
            item = int(rng.integers(len(source.entries)))
            if item in source.failures:
                continue
            try:
                image = load_image(source, item, rng)
                conditions.append(image_condition(source, item))
                images.append(image)
                break
            except VideoReadError as exc:
                source.record_failure(item, exc)
        else:
            raise DataError(f"{MAX_IMAGE_ATTEMPTS} draws in a row were unreadable for a joint-training image (the "
                            "last warning names one): check data_config.data_folder "
                            f"{source.data_config.data_folder!r} or frame_data_txt")
    return np.concatenate(images), stack_conditions(conditions)  # n x (1, C, H, W) -> (n, C, H, W)
