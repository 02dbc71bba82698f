"""Video folders as the metrics read them: listing (video files or frame folders), the seeded clip plan (FVD,
video IS), the seeded frame plan (FID, IS: every frame of every video is one image), decoding."""
import bisect
import random
from collections import OrderedDict
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
    flip: bool = False  # mirrored left-right (the legacy FID's --mirror)


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
        raise DataError(f"{where}: no video has {span} frames ({num_frames} frames, every {subsample}-th): give "
                        f"videos of at least {span} frames")
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


def plan_frames(entries, max_items, seed, mirror=False):
    """Single frames as one-frame clips, as StyleGAN-V's image dataset of the frames: every frame of every video
    (twice, the second copy mirrored, with `mirror`), a seeded random sample of max_items of them (all, shuffled,
    when max_items is None or larger), in the sampled order."""
    lengths = [video_length(e) for e in entries]
    starts = np.cumsum([0] + lengths)  # frame id of each video's first frame
    total = int(starts[-1])
    if total == 0:
        raise DataError("no frames in the videos")
    copies = 2 if mirror else 1
    rng = random.Random(seed)
    count = total * copies if max_items is None else min(max_items, total * copies)
    frames_of = [tuple(e.frames) for e in entries]  # one tuple per video, shared by its frames
    plan = []
    for item in rng.sample(range(total * copies), count):
        flip, frame_id = divmod(item, total)
        v = bisect.bisect_right(starts, frame_id) - 1
        plan.append(Clip(entries[v].name, entries[v].path, frames_of[v], (frame_id - int(starts[v]),), bool(flip)))
    return plan


def read_clip(clip, reader=None):
    """(3, T, H, W) uint8 frames of one clip (`reader`: the clip's video, already open)."""
    own = reader is None
    if own:
        reader = FrameFolderReader(clip.frames) if clip.frames else open_video(clip.path)
    try:
        frames = to_rgb(np.asarray(reader.get_frames(list(clip.indices))))  # (T, H, W, 3)
    finally:
        if own:
            reader.close()
    if clip.flip:
        frames = frames[:, :, ::-1]  # (T, H, W, 3): W reversed
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))  # (T, H, W, 3) -> (3, T, H, W)


def read_clips(clips):
    """read_clip of each clip, every video opened once."""
    by_video = OrderedDict()
    for position, clip in enumerate(clips):
        by_video.setdefault(clip.path, []).append(position)
    out = [None] * len(clips)
    for positions in by_video.values():
        first = clips[positions[0]]
        reader = FrameFolderReader(first.frames) if first.frames else open_video(first.path)
        try:
            for position in positions:
                out[position] = read_clip(clips[position], reader)
        finally:
            reader.close()
    return out
