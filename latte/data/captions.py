"""Captions of training videos (text-to-video): a CSV of video,caption rows, or a text file beside each video.

    data_config.caption_file: captions.csv        a header row naming a `video` and a `caption` column (any
                                                  order; other columns are ignored), then one row per video:
    video,caption
    clips/cat.mp4,"A cat wearing sunglasses."     paths relative to the CSV's folder, or absolute
    sky/clip_0001,Clouds drifting over a hill     a frame folder is named by its folder

Without caption_file, a video's caption is the UTF-8 text file beside it: clip.mp4 -> clip.txt; a frame folder
clip/ -> clip.txt beside the folder, else clip/caption.txt inside it. Sources whose listing captions the videos
(synthetic data, caches) keep those captions.

A caption is stripped and its lines joined with single spaces. Skipped, each with its reason in
build_video_index's one warning: a video without a caption, or with an empty one; a video listed twice in the
CSV (which caption is meant is unknown); a CSV row naming no file on disk, or no file at all.
"""
import csv
import dataclasses
import logging
import os

from latte.data.errors import DataError
from latte.data.sources import find_data_file

logger = logging.getLogger(__name__)

VIDEO_COLUMN, CAPTION_COLUMN = "video", "caption"
TEXT_EXTENSION = ".txt"  # clip.mp4 -> clip.txt, frame folder clip/ -> clip.txt
FOLDER_CAPTION = "caption.txt"  # inside a frame folder, when no clip.txt is beside it
# Skip reasons (a reason starts with its kind; build_video_index counts the kinds)
NO_CAPTION = "no caption"
EMPTY_CAPTION = "empty caption"
LISTED_TWICE = "listed twice in caption_file"
NOT_ON_DISK = "in caption_file but not on disk"
NO_PATH = "caption_file row without a video path"
CAPTION_REASONS = (NO_CAPTION, EMPTY_CAPTION, LISTED_TWICE, NOT_ON_DISK, NO_PATH)


def clean_caption(text):
    """A caption as stored: its non-blank lines stripped and joined with single spaces ('' when blank)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _path_key(path):
    """How a CSV row and a listed video are matched: absolute normalized paths (symlinks are not resolved, so two
    links to one file stay two videos)."""
    return os.path.normcase(os.path.abspath(path))


@dataclasses.dataclass
class CaptionTable:
    """The rows of a caption CSV, by the path of the video they name (_path_key)."""
    path: str
    captions: dict  # path key -> (line, caption cleaned; '' when the cell is empty or absent)
    twice: dict  # path key -> [lines] of videos listed more than once (not in captions)
    bad_rows: list  # (name, reason) of rows naming no file, or a file that is not on disk


def read_caption_csv(path, data_folder=""):
    """Reads a caption CSV (found as given, or under data_folder). Raises DataError when it has no header row
    naming the `video` and `caption` columns."""
    found = find_data_file(path, data_folder, "caption_file", f"a CSV with a header row naming the "
                                                              f"{VIDEO_COLUMN!r} and {CAPTION_COLUMN!r} columns")
    folder = os.path.dirname(os.path.abspath(found))
    with open(found, encoding="utf-8-sig", newline="") as f:  # utf-8, with or without a byte-order mark
        reader = csv.reader(f)
        header = next(reader, [])
        columns = [c.strip().lower() for c in header]
        if VIDEO_COLUMN not in columns or CAPTION_COLUMN not in columns:
            raise DataError(f"data_config.caption_file={found!r}: the header row {header} does not name the "
                            f"{VIDEO_COLUMN!r} and {CAPTION_COLUMN!r} columns: begin the file with "
                            f"'{VIDEO_COLUMN},{CAPTION_COLUMN}'")
        video_at, caption_at = columns.index(VIDEO_COLUMN), columns.index(CAPTION_COLUMN)
        rows = []  # (line the row starts on, name as written, path key, caption)
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num  # a quoted cell may span lines
            if not any(c.strip() for c in cells):
                continue  # a blank line
            name = cells[video_at].strip().replace("\\", "/") if video_at < len(cells) else ""
            caption = clean_caption(cells[caption_at]) if caption_at < len(cells) else ""
            key = _path_key(os.path.join(folder, name)) if name else None
            rows.append((start, name, key, caption))

    lines_of = {}
    for line, _, key, _ in rows:
        lines_of.setdefault(key, []).append(line)
    table = CaptionTable(found, {}, {}, [])
    base = os.path.basename(found)
    for line, name, key, caption in rows:
        if key is None:
            table.bad_rows.append((f"{base} line {line}", NO_PATH))
        elif not os.path.exists(key):
            if line == lines_of[key][0]:
                table.bad_rows.append((name, f"{NOT_ON_DISK}: {base} line {line}"))
        elif len(lines_of[key]) > 1:
            table.twice[key] = lines_of[key]
        else:
            table.captions[key] = (line, caption)
    return table


def caption_beside(entry):
    """The caption text file of a video file or frame folder (None when it has none): see the module doc."""
    if not entry.path:
        return None
    stem = os.path.splitext(entry.path)[0] if not entry.frames else os.path.normpath(entry.path)
    candidates = [stem + TEXT_EXTENSION] + ([os.path.join(entry.path, FOLDER_CAPTION)] if entry.frames else [])
    return next((c for c in candidates if os.path.isfile(c)), None)


def _read_text_caption(path):
    with open(path, encoding="utf-8-sig") as f:
        return clean_caption(f.read())


def attach_captions(entries, data_config):
    """Gives every entry its caption. Returns (captioned entries, [(name, reason)] skipped, how many of the
    skipped are CSV rows rather than listed videos)."""
    table = read_caption_csv(data_config.caption_file, data_config.data_folder) if data_config.caption_file else None
    kept, skipped = [], []
    for entry in entries:
        caption, reason = entry.caption, None
        if table is not None:
            key = _path_key(entry.path)
            if key in table.twice:
                lines = ", ".join(map(str, table.twice[key]))
                reason = f"{LISTED_TWICE}: lines {lines} of {os.path.basename(table.path)}"
            caption = table.captions.pop(key, (None, None))[1]
        elif caption is None:
            text_file = caption_beside(entry)
            caption = None if text_file is None else _read_text_caption(text_file)
        else:  # captioned by its listing (synthetic, cache)
            caption = clean_caption(caption)
        if reason is None and caption is None:
            reason = NO_CAPTION
        elif reason is None and not caption:
            reason = EMPTY_CAPTION
        if reason is None:
            kept.append(dataclasses.replace(entry, caption=caption))
        else:
            skipped.append((entry.name, reason))
    if table is None:
        return kept, skipped, 0
    if table.captions:  # rows left: files on disk that are no listed video
        logger.info("data: %d rows of %s name files that are not listed videos of %r (outside data_folder, "
                    "filtered out, or not videos); they are not used", len(table.captions), table.path,
                    data_config.data_folder)
    return kept, skipped + table.bad_rows, len(table.bad_rows)
