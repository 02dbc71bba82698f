"""Whether sampled videos of moving shapes are coherent: each object keeps its presence, size and colour through
every frame and moves smoothly (latte/data/coherence.py says exactly how it is measured); and how many of them
show squares (latte/data/squareness.py: the four-fold moment of each shape, below -0.15 for a square).

    python sample.py -c configs/inference/demo.yaml             # writes samples/demo/<time>/
    python tools/coherence.py samples/demo/<time>               # prints each video's verdict, writes coherence.json
    python tools/coherence.py outputs/demo/samples/step-0001600 # a training checkpoint's samples
    python tools/coherence.py samples/demo_t2v/<time> --palette captions   # the text-to-video demo's colours

Videos enlarged for display (display_scale) are shrunk back to their sampled size first.
"""
import argparse
import math
import os
import sys

from latte.cli import run_cli
from latte.data.coherence import score_coherence
from latte.data.shape_captions import CAPTION_COLOURS
from latte.data.squareness import SQUARE_BELOW, is_square, video_squareness
from latte.data.synthetic import PALETTE
from latte.io import read_sample_video, sample_files, write_json

RESULT_FILE = "coherence.json"
PALETTES = {"synthetic": list(PALETTE), "captions": list(CAPTION_COLOURS.values())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a folder of sampled GIF / mp4 videos")
    parser.add_argument("--palette", default="synthetic", choices=sorted(PALETTES),
                        help="the shapes' colours: 'synthetic' (the class demo) or 'captions' (the text demo)")
    parser.add_argument("--output", default="", help=f"JSON to write (default: <folder>/{RESULT_FILE})")
    args = parser.parse_args(argv)
    files = sample_files(args.folder)
    videos = [read_sample_video(path) for path in files.values()]  # each uint8 (F, H, W, 3)
    report = score_coherence(videos, PALETTES[args.palette])
    for row, name, video in zip(report["videos"], files, videos):
        row["file"] = os.path.basename(files[name])
        value = video_squareness(video)
        row["squareness"] = None if math.isnan(value) else round(value, 4)  # None: no object to measure
        row["square"] = is_square(value)
        print(f"{'ok ' if row['coherent'] else 'NO '} {'square' if row['square'] else '      '} {row['file']:<40} "
              f"{'; '.join(row['reasons'][:2])}")
    report["squares"] = sum(row["square"] for row in report["videos"])
    output = args.output or os.path.join(args.folder, RESULT_FILE)
    write_json(report, output)
    print(f"squares: {report['squares']} of {report['count']} videos show squares (squareness below "
          f"{SQUARE_BELOW}; the class demo's training clips: half are squares, 88% of them counted)")
    print(f"coherent: {sum(r['coherent'] for r in report['videos'])} of {report['count']} videos "
          f"({report['coherent']:.1f}%) -> {output}")
    return 0


def cli(argv=None):
    """main() with user errors (a missing or empty folder) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
