"""One PNG of the frames of sampled videos: a row per video, its frames left to right (the README's demo pictures).

    python tools/frame_strip.py samples/demo_t2v/<time> --output docs/demo_t2v_samples.png --count 8
    python tools/frame_strip.py samples/demo/<time> --output docs/demo_samples.png

Videos enlarged for display (display_scale) are shrunk back first, then every frame is enlarged --scale times.
The videos are taken in file-name order (sample.py numbers them); --every N keeps one video in N.
"""
import argparse
import sys

import numpy as np

from latte.cli import run_cli
from latte.io import read_sample_video, sample_files, save_image_grid
from latte.sampling import enlarge


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a folder of sampled GIF / mp4 videos")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--count", type=int, default=8, help="videos (rows) in the picture")
    parser.add_argument("--every", type=int, default=1, help="keep one video in this many (file-name order)")
    parser.add_argument("--scale", type=int, default=4, help="enlarge each frame this many times")
    args = parser.parse_args(argv)
    paths = list(sample_files(args.folder).values())[::max(args.every, 1)][:args.count]
    videos = [read_sample_video(path) for path in paths]  # each (F, H, W, 3)
    frames = min(len(v) for v in videos)
    tiles = enlarge(np.concatenate([v[:frames] for v in videos]), args.scale)  # (N*F, H*s, W*s, 3)
    save_image_grid(tiles, args.output, nrow=frames)
    print(f"wrote {args.output}: {len(videos)} videos x {frames} frames")
    return 0


def cli(argv=None):
    """main() with user errors (a missing or empty folder) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
