"""The one exception type the data side raises for unusable datasets."""


class DataError(ValueError):
    """A dataset cannot be built: missing folder, no usable videos, bad filter list, bad label layout.

    Subclasses ValueError so callers that validate configs with `except ValueError` also catch it.
    """


class VideoReadError(Exception):
    """One video cannot give the requested clip (undecodable, unreadable frame, too short).

    Raised by readers and clip sampling; the dataset catches it, records the video as bad and substitutes
    another one. It never reaches the user unless too many videos in a row fail.
    """
