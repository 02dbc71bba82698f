"""Decoding frames: numbered-image folders, and video files through decord, imageio or OpenCV.

Every reader has `num_frames`, `get_frames(indices) -> uint8 (F, H, W, C)` and `close()`. C is 3 (RGB),
except that imageio may return 1 or 4 channels for GIFs: `transforms.to_rgb` normalises them.
Decoder modules are imported when a file is opened, so a missing decord falls back to the next backend.
"""
import contextlib
import importlib
import os

import numpy as np

from latte.data.config import VIDEO_BACKENDS
from latte.data.errors import VideoReadError

# Longest error text kept from a decoder (ffmpeg messages carry its whole banner).
MAX_REASON_CHARS = 160


# MindSpore's dataset and MindRecord errors open with "Exception thrown from dataset pipeline. Refer to 'Dataset
# Pipeline Error Message'." and give the reason under a "- Dataset Pipeline Error Message:" header (or "- ... Error
# Message:" of other kinds), between lines of dashes, before a C++ call stack.
MINDSPORE_REASON_HEADER = "Error Message:"


def mindspore_reason(text):
    """The reason MindSpore gives under its '- ... Error Message:' header ('[ERROR] ' dropped), or None."""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("-") and line.endswith(MINDSPORE_REASON_HEADER):
            reason = [x for x in lines[i + 1:] if x and not set(x) <= {"-"}]
            if reason and not reason[0].startswith("- "):
                return reason[0].removeprefix("[ERROR]").strip()
    return None


def short_reason(exc):
    """One line of an exception's message, trimmed: its first line, or the reason inside a MindSpore error
    (whose first line only says to read further): what the skip warning and the cache's error show."""
    text = str(exc).strip()
    lines = text.splitlines()
    first = mindspore_reason(text) or (lines[0] if lines else "")
    return f"{type(exc).__name__}: {first[:MAX_REASON_CHARS]}"


@contextlib.contextmanager
def video_read_errors():
    """Turns whatever a decoder raises inside the block into VideoReadError(short reason): every such error means
    "this video is unusable" (a VideoReadError passes through unchanged)."""
    try:
        yield
    except VideoReadError:
        raise
    except Exception as exc:  # decoders raise many types
        raise VideoReadError(short_reason(exc)) from exc


def _optional_import(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class FrameFolderReader:
    """A video stored as one image file per frame; `frame_paths` already in playback order.

    Frames are decoded with Pillow, not OpenCV: once decord is imported, its bundled zlib 1.2.3 makes
    OpenCV's PNG decoding fail in that process ("libpng error: bad parameters to zlib").
    """

    def __init__(self, frame_paths):
        self.frame_paths = list(frame_paths)
        self.num_frames = len(self.frame_paths)

    def get_frames(self, indices):
        from PIL import Image

        frames = []
        for i in indices:
            path = self.frame_paths[i]
            try:
                with Image.open(path) as image:
                    frames.append(np.asarray(image.convert("RGB")))  # gray, palette, RGBA -> (H, W, 3)
            except (OSError, ValueError) as exc:
                raise VideoReadError(f"cannot decode image {path} ({short_reason(exc)})") from exc
        if len({f.shape for f in frames}) > 1:
            raise VideoReadError(f"frames of different sizes in {os.path.dirname(self.frame_paths[0])}")
        return np.stack(frames)  # (F, H, W, 3)

    def close(self):
        pass


class DecordReader:
    def __init__(self, path):
        decord = _optional_import("decord")
        if decord is None:
            raise ImportError("decord is not installed")
        self._video = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        self.num_frames = len(self._video)

    def get_frames(self, indices):
        return self._video.get_batch([int(i) for i in indices]).asnumpy()  # (F, H, W, 3) RGB

    def close(self):
        self._video = None


def _read_sequentially(frame_iter, indices, path):
    """Decode forward once, keeping the frames whose index is wanted (readers without cheap seeking)."""
    indices = [int(i) for i in indices]
    wanted = set(indices)
    kept = {}
    for i, frame in enumerate(frame_iter):
        if i in wanted:
            kept[i] = np.asarray(frame)
        if len(kept) == len(wanted):
            break
    missing = [i for i in indices if i not in kept]
    if missing:
        raise VideoReadError(f"{path}: frame {missing[0]} could not be decoded (the video ends early)")
    return np.stack([kept[i] for i in indices])


class ImageioReader:
    def __init__(self, path):
        imageio = _optional_import("imageio.v2")
        if imageio is None:
            raise ImportError("imageio is not installed")
        self.path = path
        self._reader = imageio.get_reader(path)
        if hasattr(self._reader, "count_frames"):  # ffmpeg plugin: get_length() may be inf
            self.num_frames = int(self._reader.count_frames())
        else:
            self.num_frames = int(self._reader.get_length())

    def get_frames(self, indices):
        frames = _read_sequentially(self._reader, indices, self.path)
        return frames if frames.ndim == 4 else frames[..., None]  # gray GIF frames come as (F, H, W)

    def close(self):
        self._reader.close()


class OpenCVReader:
    def __init__(self, path):
        cv2 = _optional_import("cv2")
        if cv2 is None:
            raise ImportError("opencv is not installed")
        self.path = path
        self._cv2 = cv2
        self._capture = cv2.VideoCapture(path)
        if not self._capture.isOpened():
            raise VideoReadError(f"OpenCV cannot open {path}")
        # Container metadata: may be approximate; a short read is caught in get_frames.
        self.num_frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.num_frames <= 0:
            raise VideoReadError(f"OpenCV finds no frame count in {path}")

    def _frames(self):
        while True:
            ok, frame = self._capture.read()
            if not ok:
                return
            yield self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def get_frames(self, indices):
        self._capture.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
        return _read_sequentially(self._frames(), indices, self.path)

    def close(self):
        self._capture.release()


VIDEO_READERS = {"decord": DecordReader, "imageio": ImageioReader, "opencv": OpenCVReader}
assert tuple(VIDEO_READERS) == VIDEO_BACKENDS


class FallbackReader:
    """'auto' backend: decodes with the first backend that opened the file and, if decoding fails, retries
    with the next ones (decord opens some small-width H.264 files, e.g. 16, 24 or 48 pixels wide, then
    fails in get_batch with "DECORDArrayCopyFromTo: The size must exactly match")."""

    def __init__(self, path, backends):
        self.path = path
        self._backends = list(backends)
        self._reasons = []
        self._reader = self._open_next()
        self.num_frames = self._reader.num_frames

    def _open_next(self):
        while self._backends:
            name = self._backends.pop(0)
            try:
                reader = VIDEO_READERS[name](self.path)
                self.backend = name
                return reader
            except ImportError as exc:
                self._reasons.append(f"{name}: not installed ({exc})")
            except Exception as exc:  # decoders raise many types (RuntimeError, OSError, DECORDError ...)
                self._reasons.append(f"{name}: {short_reason(exc)}")
        raise VideoReadError(f"no backend can read {self.path} ({'; '.join(self._reasons)})")

    def get_frames(self, indices):
        while True:
            try:
                return self._reader.get_frames(indices)
            except Exception as exc:
                self._reasons.append(f"{self.backend}: {short_reason(exc)}")
                self._reader.close()
                self._reader = self._open_next()

    def close(self):
        self._reader.close()


def open_video(path, backend="auto"):
    """Open a video file with `backend`, or with decord, imageio, OpenCV in turn ("auto": see FallbackReader).

    Raises VideoReadError naming every backend's reason when none can open it.
    """
    if backend == "auto":
        return FallbackReader(path, VIDEO_BACKENDS)
    try:
        return VIDEO_READERS[backend](path)
    except ImportError as exc:
        raise VideoReadError(f"cannot open {path} ({backend}: not installed ({exc}))") from exc
    except VideoReadError:
        raise
    except Exception as exc:
        raise VideoReadError(f"cannot open {path} ({backend}: {short_reason(exc)})") from exc
