"""DataConfig: every data key a training config may set, with its default and meaning.

image_size, num_frames, batch size, seed and shard id/count are NOT here: they belong to the model and the
run, and are passed to `create_video_dataset` by the caller.
"""
from dataclasses import dataclass, field
from typing import List, Optional

# How a clip's class label is derived (only read when the model is class-conditional).
CLASS_FROM_CHOICES = ("folder", "filename")
# Video decoders; "auto" tries them in this order and uses the first that opens the file.
VIDEO_BACKENDS = ("decord", "imageio", "opencv")
VIDEO_BACKEND_CHOICES = ("auto",) + VIDEO_BACKENDS
DEFAULT_VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SYNTHETIC_SHAPES = ("circle", "square", "triangle", "digit")
DEFAULT_SYNTHETIC_SHAPES = ("circle", "square", "triangle")


@dataclass
class DataConfig:
    data_folder: str = field(
        default="",
        metadata={"help": "Root folder of the training videos, or the cache folder for 'numpy'/'mindrecord' "
                          "(unused for train_data_type 'synthetic')."},
    )
    train_data_type: str = field(
        default="video_file",
        metadata={"help": "How data_folder is laid out: 'video_file' (video files, any depth), 'frame_folder' "
                          "(one folder of numbered images per video, any depth: Sky Timelapse) or 'synthetic' "
                          "(moving shapes generated on the fly; no files), or a latent cache written by "
                          "tools/embedding_cache.py: 'numpy' or 'mindrecord'."},
    )
    sample_stride: int = field(
        default=3,
        metadata={"help": "Take every sample_stride-th frame: a clip of num_frames spans "
                          "(num_frames - 1) * sample_stride + 1 source frames."},
    )
    num_parallel_workers: int = field(
        default=2,
        metadata={"help": "Worker processes decoding clips (1 = decode in a thread of the main process); "
                          "also the number of threads scanning videos at start."},
    )
    max_rowsize: Optional[int] = field(
        default=None,
        metadata={"help": "Shared memory (MB) per row between worker processes (mindone name). null (default) "
                          "lets MindSpore size it dynamically; MindSpore >= 2.8 deprecates setting it. Only "
                          "used when num_parallel_workers > 1."},
    )
    shuffle: bool = field(
        default=True,
        metadata={"help": "Shuffle videos each epoch (seeded by the run seed and the epoch number)."},
    )
    random_flip: bool = field(
        default=False,
        metadata={"help": "Flip each clip horizontally with probability 0.5 (official Latte: on for UCF101, "
                          "off for Sky Timelapse)."},
    )
    filter_list: Optional[str] = field(
        default=None,
        metadata={"help": "Optional text file naming the videos to use, one per line, first token per line "
                          "(UCF101 trainlist style: 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1'). A name "
                          "matches a video's path relative to data_folder, its file name, or its stem."},
    )
    class_from: str = field(
        default="folder",
        metadata={"help": "Class label source when the model is class-conditional: 'folder' (name of the "
                          "folder holding the video) or 'filename' (UCF101 'v_<Class>_gXX_cYY'). Classes are "
                          "sorted by name and numbered 0..K-1."},
    )
    video_extensions: List[str] = field(
        default_factory=lambda: list(DEFAULT_VIDEO_EXTENSIONS),
        metadata={"help": "File extensions (case-insensitive) counted as videos for 'video_file'."},
    )
    video_backend: str = field(
        default="auto",
        metadata={"help": "Video decoder: 'auto' (decord, then imageio, then OpenCV: the next one is tried "
                          "when one is missing or fails on a file), 'decord', 'imageio' or 'opencv'."},
    )
    scan_videos: bool = field(
        default=True,
        metadata={"help": "For 'video_file': open every video once when the dataset is built (~5 ms each) so "
                          "unreadable or too-short ones are dropped and named in one warning. If false, they "
                          "are found while training and replaced by another video, deterministically."},
    )
    num_videos: int = field(
        default=256,
        metadata={"help": "'synthetic' only: number of distinct generated videos."},
    )
    video_length: int = field(
        default=48,
        metadata={"help": "'synthetic' only: frames per generated video."},
    )
    synthetic_shapes: List[str] = field(
        default_factory=lambda: list(DEFAULT_SYNTHETIC_SHAPES),
        metadata={"help": "'synthetic' only: shape kinds to draw, from " + ", ".join(SYNTHETIC_SHAPES)
                          + ". Each video shows one kind; that kind is its class label."},
    )

    def __post_init__(self):
        _check_choice("class_from", self.class_from, CLASS_FROM_CHOICES)
        _check_choice("video_backend", self.video_backend, VIDEO_BACKEND_CHOICES)
        for name in ("sample_stride", "num_parallel_workers", "num_videos", "video_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data_config.{name}={value!r}: expected an integer >= 1")
        for shape in self.synthetic_shapes:
            _check_choice("synthetic_shapes", shape, SYNTHETIC_SHAPES)
        if not self.synthetic_shapes:
            raise ValueError(f"data_config.synthetic_shapes is empty: name at least one of {SYNTHETIC_SHAPES}")
        for ext in self.video_extensions:
            if not ext.startswith("."):
                raise ValueError(f"data_config.video_extensions has {ext!r}: write extensions with a dot, e.g. '.{ext}'")


def _check_choice(key, value, choices):
    if value not in choices:
        raise ValueError(f"data_config.{key}={value!r}: expected one of {list(choices)}")
