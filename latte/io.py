"""Writing videos (GIF, MP4) and image grids; every write is atomic.

Two frame layouts are accepted, told apart by dtype:
  uint8            (F, H, W, C)  C in {1, 3}: display layout, written as is;
  float (any)      (F, C, H, W)  in [-1, 1]: model layout (Latte's output per video), converted by
                                 video_to_uint8 exactly as the official sampler does.
A write goes to a hidden temporary file in the target folder and is renamed onto the final name only when
complete, so a crash never leaves a half-written file under the final name.
"""
import contextlib
import json
import logging
import os
import uuid

import numpy as np

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".gif", ".mp4")
# image files: frames read from frame folders (latte.data, tools/train_vae.py) and grids written here (OpenCV
# encodes all of them)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
RGB_CHANNELS = 3
PIXEL_MAX = 255
DEFAULT_FPS = 8
MP4_CODEC = "libx264"
MP4_PIXEL_FORMAT = "yuv420p"  # plays everywhere; needs even height and width
MP4_QUALITY = 8  # imageio-ffmpeg scale 0..10 (10 = best)
MS_PER_SECOND = 1000.0
GIF_FRAMES_COMMENT = "latte-ms frames="  # + the frame count, in every GIF written here (see _write_gif)
GIF_LOOP_FOREVER = 0
GRID_PADDING = 2  # pixels between grid cells (torchvision.utils.make_grid's default)


def _to_numpy(array):
    return array.asnumpy() if hasattr(array, "asnumpy") else np.asarray(array)  # MindSpore Tensor or array


def video_to_uint8(video):
    """float (..., C, H, W) in [-1, 1] -> uint8 (..., H, W, C), as the official Latte: (x*0.5+0.5)*255 + 0.5, clamp.

    One video (F, C, H, W) or a batch (B, F, C, H, W); numpy arrays or MindSpore Tensors; C is 1 or 3.
    NaNs (a diverged sample) become mid-grey and are counted in a warning.
    """
    video = _to_numpy(video).astype(np.float32)
    if video.ndim < 3 or video.shape[-3] not in (1, RGB_CHANNELS):
        raise ValueError(f"video has shape {video.shape}; expected float (F, C, H, W) or (B, F, C, H, W) "
                         "with C = 1 or 3")
    nans = int(np.isnan(video).sum())
    if nans:
        logger.warning("video_to_uint8: %d NaN values written as mid-grey", nans)
        video = np.nan_to_num(video, nan=0.0)
    pixels = np.clip((video * 0.5 + 0.5) * PIXEL_MAX + 0.5, 0, PIXEL_MAX).astype(np.uint8)
    return np.moveaxis(pixels, -3, -1)  # (..., C, H, W) -> (..., H, W, C)


def to_display_frames(frames):
    """Either accepted layout (see module doc) -> uint8 (F, H, W, 3)."""
    frames = _to_numpy(frames)
    if frames.dtype == np.uint8:
        if frames.ndim == 3:
            frames = frames[..., None]  # (F, H, W) -> (F, H, W, 1)
        if frames.ndim != 4 or frames.shape[-1] not in (1, RGB_CHANNELS):
            raise ValueError(f"uint8 frames have shape {frames.shape}; expected (F, H, W, 3) or (F, H, W, 1)")
    elif np.issubdtype(frames.dtype, np.floating):
        if frames.ndim != 4:
            raise ValueError(f"float frames have shape {frames.shape}; expected one video (F, 3, H, W)")
        frames = video_to_uint8(frames)
    else:
        raise ValueError(f"frames have dtype {frames.dtype}; expected uint8 (F, H, W, 3) "
                         "or float in [-1, 1] (F, 3, H, W)")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, RGB_CHANNELS, axis=-1)  # (F, H, W, 1) -> (F, H, W, 3)
    return np.ascontiguousarray(frames)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path` (same extension); rename it onto `path` only if the body succeeds."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    temporary = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:8]}.tmp{ext}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(obj, path):
    """Write obj as indented JSON to path, whole or not at all: a crash leaves the previous file (or none)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _pad_to_even(frames):
    """yuv420p needs even sides: repeat the last row/column where odd. (F, H, W, 3) -> (F, H', W', 3)."""
    _, height, width, _ = frames.shape
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    return np.pad(frames, pad, mode="edge") if any(p[1] for p in pad) else frames


def _write_gif(frames, path, fps):
    import imageio.v3 as iio

    # Pillow merges identical consecutive frames into one longer frame (timing is kept): the comment records the
    # frame count, so read_sample_video can give every frame back.
    iio.imwrite(path, frames, plugin="pillow", extension=".gif", duration=MS_PER_SECOND / fps,
                loop=GIF_LOOP_FOREVER, comment=f"{GIF_FRAMES_COMMENT}{len(frames)}")


def _gif_repeats(path, stored):
    """How many written frames each of the `stored` frames of a GIF from _write_gif stands for (Pillow merged
    identical consecutive ones), from its frame count comment and the frames' durations; None when the GIF does
    not say (written elsewhere) or the durations do not add up."""
    from PIL import Image

    with Image.open(path) as image:
        comment = image.info.get("comment", b"")
        comment = comment.decode("ascii", "replace") if isinstance(comment, bytes) else str(comment)
        if not comment.startswith(GIF_FRAMES_COMMENT):
            return None
        written = int(comment[len(GIF_FRAMES_COMMENT):])
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(float(image.info.get("duration", 0)))
    durations = np.asarray(durations)
    if len(durations) != stored or durations.sum() <= 0:
        return None
    repeats = np.round(durations * written / durations.sum()).astype(int)  # GIF timing is in 10 ms steps
    return repeats if repeats.sum() == written and repeats.min() >= 1 else None


def _write_mp4(frames, path, fps):
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec=MP4_CODEC, quality=MP4_QUALITY,
                                pixelformat=MP4_PIXEL_FORMAT, macro_block_size=1, ffmpeg_log_level="error")
    try:
        for frame in _pad_to_even(frames):
            writer.append_data(frame)
    finally:
        writer.close()


_VIDEO_WRITERS = {".gif": _write_gif, ".mp4": _write_mp4}


def save_video(frames, path, fps=DEFAULT_FPS):
    """Write a video; the format comes from the extension (.gif loops forever, .mp4 is H.264 yuv420p).

    frames: uint8 (F, H, W, 3) or float (F, 3, H, W) in [-1, 1] (see module doc). Odd MP4 sizes are padded
    by one repeated row/column. Returns path.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in _VIDEO_WRITERS:
        raise ValueError(f"cannot write {path!r}: the extension must be one of {VIDEO_EXTENSIONS}")
    if fps <= 0:
        raise ValueError(f"fps={fps}: expected a positive frame rate")
    frames = to_display_frames(frames)
    with atomic_path(path) as temporary:
        _VIDEO_WRITERS[ext](frames, temporary, fps)
    return path


def save_frames(frames, folder):
    """Write a video as a folder of PNG frames 000000.png, 000001.png ... (the frame-folder layout the metrics and
    the official evaluation read). frames: as save_video. Returns folder."""
    from PIL import Image

    frames = to_display_frames(frames)
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        with atomic_path(os.path.join(folder, f"{i:06d}.png")) as temporary:
            Image.fromarray(frame).save(temporary, format="PNG")
    return folder


SAMPLE_EXTENSIONS = (".gif", ".mp4")


def sample_files(folder):
    """{stem: path} of the videos sample.py (or a checkpoint's samples) wrote in folder, one per sample: the GIF
    where both formats were written. A missing folder, or one without videos, raises DataError (a user error:
    latte.cli prints it as one line)."""
    from latte.data.errors import DataError  # here, not at the top: latte.data imports this module

    if not os.path.isdir(folder):
        raise DataError(f"{folder!r} is not a folder: give a folder of sampled videos (sample.py's output)")
    found = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext in SAMPLE_EXTENSIONS and (stem not in found or ext == ".gif"):
            found[stem] = os.path.join(folder, name)
    if not found:
        raise DataError(f"no .gif or .mp4 videos in {folder}: give a sample.py output folder")
    return found


def read_sample_video(path):
    """The frames of a written sample, uint8 (F, H, W, 3), at the size it was sampled: a GIF or mp4 enlarged with
    display_scale (nearest neighbour) is shrunk back."""
    import imageio.v3 as iio

    frames = iio.imread(path, index=None)[..., :3]  # (F, H, W, 3 or 4) -> RGB
    if os.path.splitext(path)[1].lower() == ".gif":
        repeats = _gif_repeats(path, len(frames))
        if repeats is not None:
            frames = np.repeat(frames, repeats, axis=0)  # (F', H, W, 3) -> (F, H, W, 3): merged frames restored
    return shrink_enlarged(frames)


def shrink_enlarged(frames):
    """(F, H, W, C) -> (F, H/s, W/s, C) for the largest s whose s x s blocks are all one colour (the enlargement
    of latte.sampling.enlarge); s = 1 leaves the frames as they are."""
    height, width = frames.shape[1:3]
    for scale in range(min(height, width), 1, -1):
        if height % scale or width % scale:
            continue
        small = frames[:, ::scale, ::scale]
        if np.array_equal(small.repeat(scale, axis=1).repeat(scale, axis=2), frames):
            return small
    return frames


def make_image_grid(images, nrow=8, padding=GRID_PADDING):
    """Tile images into one uint8 (H', W', 3) array, nrow images per row, black padding between cells.

    images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1].
    """
    images = to_display_frames(images)
    count, height, width, _ = images.shape
    if count == 0:
        raise ValueError("make_image_grid got no images: pass at least one (N >= 1)")
    ncol = min(nrow, count)
    nrows = -(-count // ncol)  # ceil
    grid = np.zeros((nrows * (height + padding) + padding, ncol * (width + padding) + padding, RGB_CHANNELS),
                    np.uint8)
    for i, image in enumerate(images):
        top = padding + (i // ncol) * (height + padding)
        left = padding + (i % ncol) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def save_image_grid(images, path, nrow=8, padding=GRID_PADDING):
    """Write images as one grid picture (format by extension: PNG, JPEG ...); pass videos[:, 0] for first frames.

    images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1]. Returns path.
    """
    import cv2

    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write {path!r}: the extension must be one of {IMAGE_EXTENSIONS}")
    grid = make_image_grid(images, nrow, padding)
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {grid.shape} grid as {ext}")
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(encoded.tobytes())
    return path
