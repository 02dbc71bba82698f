"""Finding the videos of a dataset: listing, filter lists, class labels, and the data-type registry.

A data type is one entry of SOURCE_TYPES: a `list_videos(data_config, image_size)` that finds the videos
cheaply (no decoding) and an `open_video(entry, data_config, image_size)` that returns a reader (see
readers.py). Adding a type (e.g. a latent cache) is adding one entry.
"""
import logging
import os
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Tuple

from latte.data.errors import DataError
from latte.data.readers import FrameFolderReader, open_video
from latte.data.shape_captions import CAPTION_SHAPES
from latte.data.synthetic import SyntheticReader, make_caption_spec, make_video_spec, synthetic_class_names
from latte.data.transforms import preprocess_clip
from latte.io import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# UCF101 file names: v_<Class>_g<group>_c<clip>, e.g. v_ApplyEyeMakeup_g08_c01.avi
UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g\d+_c\d+$")
FILTER_COMMENT = "#"
EXAMPLES_SHOWN = 5  # names listed in a warning before "..."


@dataclass(frozen=True)
class VideoEntry:
    """One video of the dataset."""
    name: str  # path relative to data_folder with '/' separators (the name filter lists and warnings use)
    path: str  # video file or frame folder ('' for synthetic videos)
    frames: Tuple[str, ...] = ()  # frame_folder only: image paths in playback order
    num_frames: Optional[int] = None  # None until the video is opened (video files without a scan)
    class_name: Optional[str] = None  # set by the listing when the type defines it (synthetic)
    index: int = 0  # synthetic only: which generated video
    caption: Optional[str] = None  # text-to-video: the video's caption (CSV, .txt beside it, or synthetic)


def natural_key(name):
    """Sort key comparing digit runs as numbers: frame_2 < frame_10, 9.jpg < 10.jpg."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def entry_order(entry):
    """The one order of videos in a dataset (shuffling permutes positions in it): natural order of names."""
    return natural_key(entry.name)


def _relative_name(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


def _walk(root):
    """os.walk in a deterministic order (sorted folders), following symlinks, skipping hidden entries
    (names starting with '.', e.g. macOS '._frame.jpg' resource forks)."""
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = sorted((d for d in subfolders if not d.startswith(".")), key=natural_key)
        yield folder, sorted((f for f in files if not f.startswith(".")), key=natural_key)


def check_data_folder(data_folder, expected):
    if not data_folder:
        raise DataError(f"data_config.data_folder is empty: set it to a folder holding {expected}")
    if not os.path.isdir(data_folder):
        raise DataError(f"data_config.data_folder={data_folder!r} does not exist or is not a folder; expected {expected}")


def list_frame_folders(data_config, image_size=None):
    """Every folder (any depth) holding image files is one video; frames sorted by natural order of names.

    This is the Sky Timelapse layout (sky_train/<video>/<clip>/<frame>.jpg) and also <root>/<video>/<frame>.
    """
    root = data_config.data_folder
    check_data_folder(root, f"one folder of {'/'.join(IMAGE_EXTENSIONS)} frames per video")
    entries, imageless = [], []
    for folder, files in _walk(root):
        frames = tuple(os.path.join(folder, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if frames:
            entries.append(VideoEntry(_relative_name(folder, root), folder, frames, len(frames)))
        elif files:
            imageless.append(_relative_name(folder, root))
    if imageless:
        logger.info("data: %d folder(s) under %r hold files but no %s images, so no frames (e.g. %s)",
                    len(imageless), root, "/".join(IMAGE_EXTENSIONS), ", ".join(imageless[:EXAMPLES_SHOWN]))
    return sorted(entries, key=entry_order)


def list_video_files(data_config, image_size=None):
    """Every file (any depth) whose extension is in data_config.video_extensions is one video."""
    root = data_config.data_folder
    extensions = tuple(e.lower() for e in data_config.video_extensions)
    check_data_folder(root, f"video files ({', '.join(extensions)})")
    entries = []
    for folder, files in _walk(root):
        for f in files:
            if f.lower().endswith(extensions):
                path = os.path.join(folder, f)
                entries.append(VideoEntry(_relative_name(path, root), path))
    if not entries:  # mindone's Sky Timelapse yaml says video_file for sky_train/<video>/<clip>/*.jpg
        entries = list_frame_folders(data_config, image_size)
        if entries:
            logger.info("data: %r holds no video files but %d frame folders: reading them as train_data_type "
                        "frame_folder", root, len(entries))
    return sorted(entries, key=entry_order)


def list_synthetic(data_config, image_size=None):
    """data_config.num_videos generated videos of data_config.video_length frames; no files."""
    if data_config.filter_list:
        raise DataError("data_config.filter_list names files; train_data_type 'synthetic' has none: set it to null")
    if data_config.synthetic_captions:  # one shape of a named colour moving one way: "a red square moving left"
        specs = (make_caption_spec(i, data_config.video_length) for i in range(data_config.num_videos))
        return [VideoEntry(f"synthetic/{i:06d}", "", num_frames=data_config.video_length, class_name=spec.kind,
                           index=i, caption=caption) for i, (spec, caption) in enumerate(specs)]
    return [VideoEntry(f"synthetic/{i:06d}", "", num_frames=data_config.video_length,
                       class_name=make_video_spec(i, data_config.synthetic_shapes).kind, index=i)
            for i in range(data_config.num_videos)]


def open_frame_folder(entry, data_config, image_size):
    return FrameFolderReader(entry.frames)


def open_video_file(entry, data_config, image_size):
    if entry.frames:  # a frame folder found where video files were expected (list_video_files)
        return open_frame_folder(entry, data_config, image_size)
    return open_video(entry.path, data_config.video_backend)


def open_synthetic(entry, data_config, image_size):
    return SyntheticReader(entry.index, data_config.video_length, image_size, data_config.synthetic_shapes,
                           captioned=data_config.synthetic_captions)


def synthetic_classes(data_config):
    return synthetic_class_names(CAPTION_SHAPES if data_config.synthetic_captions else data_config.synthetic_shapes)


CAPTION_ID = "caption_id"  # the text column of video sources: int32, index into DatasetInfo.captions


class SourceType(NamedTuple):
    list_videos: Callable  # (data_config, image_size) -> list[VideoEntry], no decoding
    open_video: Callable  # (entry, data_config, image_size) -> reader with num_frames, get_frames, close
    scannable: bool  # whether data_config.scan_videos applies (frame counts unknown until a file is opened)
    to_sample: Callable = preprocess_clip  # (frames, image_size, rng, random_flip) -> float32 (F, C, H, W)
    class_names: Optional[Callable] = None  # (data_config) -> fixed class list; None: classes found in files
    text_columns: Tuple[str, ...] = (CAPTION_ID,)  # the columns condition "text" adds after "video"
    read_text: Optional[Callable] = None  # (entry) -> arrays of text_columns; None: the video's caption id


SOURCE_TYPES = {
    "video_file": SourceType(list_video_files, open_video_file, scannable=True),
    "frame_folder": SourceType(list_frame_folders, open_frame_folder, scannable=False),
    "synthetic": SourceType(list_synthetic, open_synthetic, scannable=False, class_names=synthetic_classes),
}


def get_source_type(name):
    if name not in SOURCE_TYPES:
        raise DataError(f"data_config.train_data_type={name!r}: expected one of {sorted(SOURCE_TYPES)}")
    return SOURCE_TYPES[name]


# ---------------------------------------------------------------- filter lists

def find_data_file(path, data_folder, key, expected):
    """The file a data_config key names: as given, or (a relative path not found from the working directory)
    under data_folder. Raises DataError naming the key, the paths tried and what the file should hold."""
    candidates = [path] if os.path.isabs(path) or not data_folder else [path, os.path.join(data_folder, path)]
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        raise DataError(f"data_config.{key}={path!r} not found (tried {candidates}): give {expected}")
    return found


def read_filter_list(path, data_folder=""):
    """Video names from a filter list: first whitespace-separated token per line; '#' lines and blanks skipped.

    A relative path that does not exist from the working directory is tried under data_folder.
    """
    found = find_data_file(path, data_folder, "filter_list", "a text file with one video name per line")
    names = []
    with open(found, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(FILTER_COMMENT):
                names.append(line.split()[0].replace("\\", "/"))
    if not names:
        raise DataError(f"data_config.filter_list={found!r} names no videos")
    return names


def _match_keys(entry):
    base = entry.name.rsplit("/", 1)[-1]
    return {entry.name, base, os.path.splitext(base)[0]}


def apply_filter_list(entries, names, filter_path):
    """Keep entries whose relative path, file name or stem is listed; warn about listed names found nowhere."""
    wanted = set(names)
    kept = [e for e in entries if _match_keys(e) & wanted]
    matched = set().union(*(_match_keys(e) for e in kept)) if kept else set()
    unmatched = [n for n in names if n not in matched]
    if unmatched:
        logger.warning("data_config.filter_list %s: %d of %d names match no video, e.g. %s", filter_path,
                       len(unmatched), len(names), ", ".join(unmatched[:EXAMPLES_SHOWN]))
    if not kept:
        raise DataError(f"data_config.filter_list={filter_path!r} matches none of the {len(entries)} videos found; names "
                        "must be paths relative to data_config.data_folder, file names or stems")
    return kept


# ---------------------------------------------------------------- class labels

def class_name_of(entry, class_from):
    """The class of one video: the type's own (synthetic), the name of the folder holding the video file or
    frame folder ('folder'), or parsed from a UCF101 name v_<Class>_gXX_cYY ('filename')."""
    if entry.class_name is not None:
        return entry.class_name
    if class_from == "folder":
        return os.path.basename(os.path.dirname(entry.path))
    stem = os.path.basename(entry.path)
    if not entry.frames:
        stem = os.path.splitext(stem)[0]
    match = UCF_NAME.match(stem)
    if match is None:
        raise DataError(f"data_config.class_from='filename' but {entry.name!r} is not named v_<Class>_gXX_cYY; "
                        "use class_from: folder for class folders")
    return match.group("cls")


def class_names_for(data_config, entries):
    """Sorted class names of these videos; a type with fixed classes (synthetic) uses those even if unused."""
    fixed = get_source_type(data_config.train_data_type).class_names
    if fixed:
        return list(fixed(data_config))
    return sorted({class_name_of(e, data_config.class_from) for e in entries})


def labels_for(entries, class_names, class_from):
    """Class id (index into class_names) of each entry."""
    index = {c: i for i, c in enumerate(class_names)}
    return [index[class_name_of(e, class_from)] for e in entries]
