"""Building the list of usable videos once, in the main process, before any pipeline or graph exists.

List (no decoding) -> filter list -> captions (text-to-video; latte/data/captions.py) -> optional scan of
video files (open each once for its frame count) -> drop videos too short for one clip -> labels. Every dropped
video is named in ONE warning, with the count of each reason; zero usable videos is one DataError naming the
folder and why.
"""
import collections
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Tuple

from latte.data.captions import CAPTION_REASONS, attach_captions
from latte.data.errors import DataError, VideoReadError
from latte.data.readers import short_reason
from latte.data.sources import (
    EXAMPLES_SHOWN, VideoEntry, apply_filter_list, class_names_for, entry_order, get_source_type, labels_for,
    read_filter_list,
)
from latte.data.transforms import clip_span

logger = logging.getLogger(__name__)

MAX_NAMED_IN_WARNING = 50  # skipped videos named in the warning; all are in VideoIndex.skipped
TOO_SHORT, UNREADABLE = "too short", "unreadable"


@dataclass
class VideoIndex:
    entries: List[VideoEntry]  # usable videos, in natural order of their names
    labels: Optional[List[int]]  # class id per entry when labels were asked for, else None
    class_names: List[str]  # label i means class_names[i]; empty when labels were not asked for
    skipped: List[Tuple[str, str]]  # (video name, reason) for every video dropped


def _probe(source, data_config, image_size, entry):
    """(entry with its frame count, None) or (entry, reason) when the video cannot be opened."""
    try:
        reader = source.open_video(entry, data_config, image_size)
    except VideoReadError as exc:
        return entry, str(exc)
    except Exception as exc:  # a decoder failing in an unexpected way still only skips this video
        return entry, short_reason(exc)
    try:
        return dataclasses.replace(entry, num_frames=int(reader.num_frames)), None
    finally:
        reader.close()


def scan_entries(source, data_config, image_size, entries, workers):
    """Open every entry once (threads) to learn its frame count. Returns (entries ok, [(name, reason)])."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda e: _probe(source, data_config, image_size, e), entries))
    ok = [entry for entry, reason in results if reason is None]
    bad = [(entry.name, reason) for entry, reason in results if reason is not None]
    return ok, bad


def reason_counts(skipped):
    """{kind: count} of skip reasons: the caption reasons, 'too short', else 'unreadable'."""
    kinds = CAPTION_REASONS + (TOO_SHORT,)
    return dict(collections.Counter(next((k for k in kinds if r.startswith(k)), UNREADABLE) for _, r in skipped))


def _warn_skipped(skipped, total, folder):
    counts = ", ".join(f"{n} {kind}" for kind, n in reason_counts(skipped).items())
    named = "; ".join(f"{name} ({reason})" for name, reason in skipped[:MAX_NAMED_IN_WARNING])
    more = len(skipped) - MAX_NAMED_IN_WARNING
    suffix = f"; and {more} more (all in DatasetInfo.skipped)" if more > 0 else ""
    logger.warning("data: skipped %d of %d videos in %s (%s): %s%s", len(skipped), total, folder, counts, named,
                   suffix)


def _no_usable_error(data_config, num_listed, skipped, span, num_frames):
    where = data_config.data_folder or data_config.train_data_type
    reasons = reason_counts(skipped)
    examples = "; ".join(f"{n} ({r})" for n, r in skipped[:EXAMPLES_SHOWN])
    hints = []
    if TOO_SHORT in reasons or UNREADABLE in reasons:
        hints.append(f"A clip of {num_frames} frames at data.sample_stride={data_config.sample_stride} needs {span} "
                     "frames per video.")
    if set(reasons) & set(CAPTION_REASONS):
        hints.append("Text-to-video needs a caption per video: data_config.caption_file (a CSV with video and "
                     "caption columns) or a .txt beside each video.")
    return DataError(f"no usable videos in {where!r}: {num_listed} listed, {reasons} skipped. {' '.join(hints)} "
                     f"Examples: {examples}")


def build_video_index(data_config, num_frames, image_size, with_labels=False, with_captions=False):
    """All usable videos of data_config for clips of num_frames; raises DataError if there are none.

    with_captions: every usable entry has its caption (entry.caption); videos without one are skipped.
    """
    source = get_source_type(data_config.train_data_type)
    entries = sorted(source.list_videos(data_config, image_size), key=entry_order)
    num_found = len(entries)
    if not entries:
        raise DataError(f"data_config.data_folder={data_config.data_folder!r} holds no videos for "
                        f"train_data_type={data_config.train_data_type!r} (see the README's data layouts)")
    if data_config.filter_list:
        names = read_filter_list(data_config.filter_list, data_config.data_folder)
        entries = apply_filter_list(entries, names, data_config.filter_list)
    num_listed = len(entries)
    # Classes come from every listed video, so an unreadable file never renumbers the classes.
    classes = class_names_for(data_config, entries) if with_labels else []

    skipped, num_rows = [], 0
    if with_captions:  # CSV rows naming no file on disk are skipped "videos" too
        entries, skipped, num_rows = attach_captions(entries, data_config)
    if source.scannable and data_config.scan_videos:
        entries, unreadable = scan_entries(source, data_config, image_size, entries,
                                           data_config.num_parallel_workers)
        skipped += unreadable
    span = clip_span(num_frames, data_config.sample_stride)
    usable = []
    for entry in entries:
        if entry.num_frames is not None and entry.num_frames < span:
            skipped.append((entry.name, f"too short: {entry.num_frames} frames < {span}"))
        else:
            usable.append(entry)
    skipped.sort()
    if not usable:
        raise _no_usable_error(data_config, num_listed + num_rows, skipped, span, num_frames)
    if skipped:
        _warn_skipped(skipped, num_listed + num_rows, data_config.data_folder or data_config.train_data_type)

    labels = labels_for(usable, classes, data_config.class_from) if with_labels else None
    logger.info("data: %s %r: %d videos found, %d after the filter list, %d usable%s",
                data_config.train_data_type, data_config.data_folder, num_found, num_listed, len(usable),
                f", {len(classes)} classes" if with_labels else "")
    return VideoIndex(usable, labels, classes, skipped)
