"""Whether sampled videos of moving shapes are coherent: each object keeps its presence, size and colour through
every frame and moves smoothly (latte/data/coherence.py says exactly how it is measured).

    python sample.py -c configs/inference/demo.yaml             # writes samples/demo/<time>/
    python tools/coherence.py samples/demo/<time>               # prints each video's verdict, writes coherence.json
    python tools/coherence.py outputs/demo/samples/step-0001600 # a training checkpoint's samples
    python tools/coherence.py samples/demo_t2v/<time> --palette captions   # the text-to-video demo's colours

Videos enlarged for display (display_scale) are shrunk back to their sampled size first.
"""
import argparse
import os
import sys

from latte.cli import run_cli
from latte.data.coherence import score_coherence
from latte.data.shape_captions import CAPTION_COLOURS
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
    report = score_coherence((read_sample_video(path) for path in files.values()), PALETTES[args.palette])
    for row, name in zip(report["videos"], files):
        row["file"] = os.path.basename(files[name])
        print(f"{'ok ' if row['coherent'] else 'NO '} {row['file']:<40} {'; '.join(row['reasons'][:2])}")
    output = args.output or os.path.join(args.folder, RESULT_FILE)
    write_json(report, output)
    print(f"coherent: {sum(r['coherent'] for r in report['videos'])} of {report['count']} videos "
          f"({report['coherent']:.1f}%) -> {output}")
    return 0


def cli(argv=None):
    """main() with user errors (a missing or empty folder) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
