"""The images of image-video joint training (the paper's Latte+IMG; official datasets/*_image_datasets.py).

Each sample's clip is followed by data_config.use_image_num single frames drawn from the whole training set:
a video at random (uniformly over the usable videos, the clip's own included), then a frame of it at random
(uniformly over its frames), read by the data type's own reader (video files, frame folders, synthetic videos,
latent caches) and prepared like a clip (centre crop and resize, flip when random_flip; a cache's latents as
stored). Each image keeps its video's label. The official draws uniformly over all frames of the set (its
frame list), so long videos weigh more there; here every video weighs the same, which needs no frame count
of every video before training.

Determinism. Attempt k at image j of the sample at (epoch, global position) draws from its own generator
seeded [seed, Stream.DATA_JOINT_IMAGES, epoch, global position, j, k]: the draws depend on neither workers
nor ranks (the global position is the video pipeline's, the same for any number of shards), resume re-draws
them exactly, and an unreadable video costs one attempt whether this process knew it failed or not.
"""
import contextlib

import numpy as np

from latte.data.errors import DataError, VideoReadError
from latte.data.readers import video_read_errors
from latte.random_streams import Stream

MAX_IMAGE_ATTEMPTS = 16  # unreadable videos in a row tolerated for one image


def load_image(source, video_index, rng):
    """One random frame of video video_index, prepared like a clip: float32 (1, C, H, W). Raises
    VideoReadError."""
    entry = source.entries[video_index]
    reader = source.source.open_video(entry, source.data_config, source.image_size)
    with video_read_errors(), contextlib.closing(reader):
        frame = int(rng.integers(reader.num_frames))
        frames = reader.get_frames([frame])  # (1, H, W, 3) pixels or (1, C, h, w) latents
    return source.source.to_sample(frames, source.image_size, rng, source.data_config.random_flip)


def draw_images(source, epoch, global_position, num_images):
    """The images of one sample: (float32 (n, C, H, W), int32 (n,) the video index of each image)."""
    images, videos = [], []
    for j in range(num_images):
        for attempt in range(MAX_IMAGE_ATTEMPTS):
            rng = np.random.default_rng([source.seed, Stream.DATA_JOINT_IMAGES, epoch, global_position, j, attempt])
            video = int(rng.integers(len(source.entries)))
            if video in source.failures:
                continue
            try:
                images.append(load_image(source, video, rng))
                videos.append(video)
                break
            except VideoReadError as exc:
                source.record_failure(video, exc)
        else:
            raise DataError(f"{MAX_IMAGE_ATTEMPTS} videos in a row were unusable for a joint-training image, e.g. "
                            f"{source.entries[video].name}: check data_config.data_folder "
                            f"{source.data_config.data_folder!r}")
    return np.concatenate(images), np.asarray(videos, np.int32)  # n x (1, C, H, W) -> (n, C, H, W)
