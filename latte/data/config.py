"""DataConfig: every data key a training config may set, with its default and meaning.

image_size, num_frames, batch size, seed and shard id/count are NOT here: they belong to the model and the
run, and are passed to `create_video_dataset` by the caller.
"""
from dataclasses import dataclass
from typing import List, Optional

from latte.config import ConfigError, check_fields, field

# train_data_type: video sources (latte/data/sources.py) and latent caches (latte/data/cache.py)
VIDEO_DATA_TYPES = ("video_file", "frame_folder", "synthetic")
NUMPY, MINDRECORD = "numpy", "mindrecord"
CACHE_DATA_TYPES = (NUMPY, MINDRECORD)
DATA_TYPES = VIDEO_DATA_TYPES + CACHE_DATA_TYPES
# How a clip's class label is derived (only read when the model is class-conditional).
CLASS_FROM_CHOICES = ("folder", "filename")
# Video decoders; "auto" tries them in this order and uses the first that opens the file.
VIDEO_BACKENDS = ("decord", "imageio", "opencv")
VIDEO_BACKEND_CHOICES = ("auto",) + VIDEO_BACKENDS
DEFAULT_VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SYNTHETIC_SHAPES = ("circle", "square", "triangle", "digit")
CAPTIONED_FROM_FILES = ("video_file", "frame_folder")  # types whose captions come from caption_file or .txt files
DEFAULT_SYNTHETIC_SHAPES = ("circle", "square", "triangle")


@dataclass
class DataConfig:
    data_folder: str = field("", "Root folder of the training videos, or the cache folder for 'numpy'/'mindrecord' "
                                 "(unused for train_data_type 'synthetic').")
    train_data_type: str = field("video_file", "How data_folder is laid out: 'video_file' (video files, any depth), "
                                               "'frame_folder' (one folder of numbered images per video, any depth: "
                                               "Sky Timelapse) or 'synthetic' (moving shapes generated on the fly; no "
                                               "files), or a latent cache written by tools/embedding_cache.py: "
                                               "'numpy' or 'mindrecord'.", choices=DATA_TYPES)
    sample_stride: int = field(3, "Take every sample_stride-th frame: a clip of num_frames spans "
                                  "(num_frames - 1) * sample_stride + 1 source frames.", minimum=1)
    num_parallel_workers: int = field(2, "Worker processes decoding clips (1 = decode in a thread of the main "
                                         "process); also the number of threads scanning videos at start.", minimum=1)
    max_rowsize: Optional[int] = field(None, "Shared memory (MB) per row between worker processes (mindone name). "
                                             "null (default) lets MindSpore size it dynamically; MindSpore >= 2.8 "
                                             "deprecates setting it. Only used when num_parallel_workers > 1.")
    shuffle: bool = field(True, "Shuffle videos each epoch (seeded by the run seed and the epoch number).")
    random_flip: bool = field(False, "Flip each clip horizontally with probability 0.5 (official Latte: on for "
                                     "UCF101, off for Sky Timelapse).")
    filter_list: Optional[str] = field(None, "Optional text file naming the videos to use, one per line, first token "
                                             "per line (UCF101 trainlist style: "
                                             "'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1'). A name matches a "
                                             "video's path relative to data_folder, its file name, or its stem.")
    caption_file: Optional[str] = field(None, "Text-to-video: a CSV whose header row names a 'video' and a 'caption' "
                                              "column (others ignored), one row per video; video paths are relative "
                                              "to the CSV's folder (or absolute), a frame folder is named by its "
                                              "folder. null: each video's caption is the UTF-8 text file beside it "
                                              "(clip.mp4 -> clip.txt; frame folder clip/ -> clip.txt, else "
                                              "clip/caption.txt). Read only when the model is text-conditional.")
    class_from: str = field("folder", "Class label source when the model is class-conditional: 'folder' (name of "
                                      "the folder holding the video) or 'filename' (UCF101 'v_<Class>_gXX_cYY'). "
                                      "Classes are sorted by name and numbered 0..K-1.", choices=CLASS_FROM_CHOICES)
    video_extensions: List[str] = field(default_factory=lambda: list(DEFAULT_VIDEO_EXTENSIONS),
                                        help="File extensions (case-insensitive) counted as videos for 'video_file'.")
    video_backend: str = field("auto", "Video decoder: 'auto' (decord, then imageio, then OpenCV: the next one is "
                                       "tried when one is missing or fails on a file), 'decord', 'imageio' or "
                                       "'opencv'.", choices=VIDEO_BACKEND_CHOICES)
    scan_videos: bool = field(True, "For 'video_file': open every video once when the dataset is built (~5 ms each) "
                                    "so unreadable or too-short ones are dropped and named in one warning. If false, "
                                    "they are found while training and replaced by another video, deterministically.")
    num_videos: int = field(256, "'synthetic' only: number of distinct generated videos.", minimum=1)
    video_length: int = field(48, "'synthetic' only: frames per generated video.", minimum=1)
    synthetic_shapes: List[str] = field(default_factory=lambda: list(DEFAULT_SYNTHETIC_SHAPES),
                                        help="'synthetic' only: shape kinds to draw. Each video shows one kind; that "
                                             "kind is its class label.", choices=SYNTHETIC_SHAPES)
    synthetic_captions: bool = field(False, "'synthetic' only: captioned videos for text-to-video (the demo): one "
                                            "shape of a named colour moving in a named direction, captioned 'a red "
                                            "square moving left' (latte/data/shape_captions.py; synthetic_shapes "
                                            "is not read then).")
    image_video_joint: bool = field(False, "Image-video joint training (the paper's Latte+IMG, mindone's name): each "
                                           "clip is followed by use_image_num single frames drawn at random from "
                                           "the whole training set, each with its own class label or caption; "
                                           "the model's temporal blocks skip them (latte/data/joint_images.py).")
    use_image_num: int = field(0, "Images per clip when image_video_joint is true (official *_img_train.yaml: 8); "
                                  "0 otherwise.", minimum=0)
    frame_data_txt: Optional[str] = field(None, "Joint training: draw the images from this list of extracted frames "
                                                "instead of the videos (the official train_list.txt / "
                                                "train_256_list.txt: one 'video_name/frame.jpg' per line, relative to "
                                                "frame_data_path; uniform over its lines). null: frames of the "
                                                "training videos themselves.")
    frame_data_path: Optional[str] = field(None, "Root folder of frame_data_txt's frames (official name); null: the "
                                                 "folder holding frame_data_txt.")

    def __post_init__(self):
        check_fields(self, "data_config.")  # also when built directly, not from a yaml
        if self.image_video_joint and not self.use_image_num:
            raise ConfigError("data_config.image_video_joint: true with use_image_num: 0: set use_image_num to the "
                              "images per clip (official: 8)")
        if self.frame_data_txt and not self.use_image_num:
            raise ConfigError("data_config.frame_data_txt lists the frames of joint training's images, but "
                              "use_image_num is 0: set image_video_joint: true and use_image_num, or frame_data_txt: "
                              "null")
        if self.frame_data_txt and self.train_data_type in CACHE_DATA_TYPES:
            raise ConfigError(f"data_config.frame_data_txt lists image files, but train_data_type is "
                              f"{self.train_data_type!r} (latents): a cache's images are its own latents; set "
                              "frame_data_txt: null")
        if self.use_image_num and not self.image_video_joint:
            raise ConfigError(f"data_config.use_image_num: {self.use_image_num} with image_video_joint: false: set "
                              "image_video_joint: true for joint training, or use_image_num: 0")
        if not self.synthetic_shapes:
            raise ConfigError(f"data_config.synthetic_shapes is empty: name at least one of {list(SYNTHETIC_SHAPES)}")
        if self.caption_file and self.train_data_type not in CAPTIONED_FROM_FILES:
            raise ConfigError(f"data_config.caption_file captions video files and frame folders, but train_data_type "
                              f"is {self.train_data_type!r} (synthetic videos and caches carry their own captions): "
                              "set caption_file: null")
        for ext in self.video_extensions:
            if not ext.startswith("."):
                raise ConfigError(f"data_config.video_extensions has {ext!r}: write extensions with a dot, "
                                  f"e.g. '.{ext}'")
