"""Video folders as FVD reads them: listing (video files or frame folders), the seeded clip plan, decoding."""
import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Tuple

import numpy as np

from latte.data.errors import DataError
from latte.data.readers import FrameFolderReader, open_video
from latte.data.sources import list_video_files
from latte.data.transforms import to_rgb
from latte.io import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Clip:
    name: str  # the video's path relative to the folder
    path: str
    frames: Tuple[str, ...]  # frame folders: image paths in order; () for a video file
    indices: Tuple[int, ...]  # the frames of the clip


def list_videos(folder):
    """Every video file (.gif/.mp4, any depth) of `folder`, else every folder of frame images, natural order."""
    entries = list_video_files(SimpleNamespace(data_folder=folder, video_extensions=VIDEO_EXTENSIONS))
    if not entries:
        raise DataError(f"{folder}: no {'/'.join(VIDEO_EXTENSIONS)} videos and no folders of frame images")
    return entries


def _open(entry):
    return FrameFolderReader(entry.frames) if entry.frames else open_video(entry.path)


def video_length(entry):
    if entry.num_frames is not None:
        return entry.num_frames
    reader = _open(entry)
    try:
        return reader.num_frames
    finally:
        reader.close()


def plan_clips(entries, num_frames, subsample, max_items, random_offset, seed, where):
    """The clips to read, in order: videos shorter than num_frames * subsample are discarded (real data) or an
    error (generated data, where StyleGAN-V's loader asserts); then a seeded random sample of max_items videos
    (all of them, shuffled, when there are fewer); offsets uniform over every start that fits."""
    span = num_frames * subsample
    lengths = [video_length(e) for e in entries]
    long_enough = [(e, n) for e, n in zip(entries, lengths) if n >= span]
    if not random_offset and len(long_enough) < len(entries):
        short = next(e.name for e, n in zip(entries, lengths) if n < span)
        raise DataError(f"{where}: video {short} has fewer than {span} frames ({num_frames} frames, every "
                         f"{subsample}-th); write longer videos")
    if not long_enough:
        raise DataError(f"{where}: no video has {span} frames ({num_frames} frames, every {subsample}-th)")
    rng = random.Random(seed)
    count = len(long_enough) if max_items is None else min(max_items, len(long_enough))
    chosen = rng.sample(range(len(long_enough)), count)
    clips = []
    for i in chosen:
        entry, length = long_enough[i]
        offset = rng.randint(0, length - span + subsample - 1) if random_offset else 0
        indices = tuple(range(offset, offset + span, subsample))
        clips.append(Clip(entry.name, entry.path, tuple(entry.frames), indices))
    return clips


def read_clip(clip):
    """(3, T, H, W) uint8 frames of one clip."""
    reader = FrameFolderReader(clip.frames) if clip.frames else open_video(clip.path)
    try:
        frames = to_rgb(np.asarray(reader.get_frames(list(clip.indices))))  # (T, H, W, 3)
    finally:
        reader.close()
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))  # (T, H, W, 3) -> (3, T, H, W)
