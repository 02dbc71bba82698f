"""How well sampled demo videos follow their prompts ('a red square moving left'): per sample, the dominant colour
of the pixels that stand out from the background (nearest named colour) and the direction of their centroid's
motion, first to last frame (latte/data/shape_captions.py).

    python sample.py -c configs/inference/demo_t2v.yaml            # writes samples/demo_t2v/<time>/
    python tools/prompt_agreement.py samples/demo_t2v/<time>       # prints the table, writes prompt_agreement.json

The prompt of a video is read from its name as sample.py writes it: <prompt index>_<the prompt's words>[_<sample>]
.gif (or .mp4). A sample agrees when both its colour and its direction along the prompt's axis (the sign of the
centroid's displacement) match; the 4-way direction (the larger displacement component) is reported too.
"""
import argparse
import os
import re
import sys

from latte.cli import run_cli
from latte.data.shape_captions import CAPTION_PATTERN, score_prompt_agreement
from latte.io import read_sample_video, sample_files, write_json

RESULT_FILE = "prompt_agreement.json"
SAMPLE_NAME = re.compile(r"^\d+_(?P<words>.+?)(?:_\d+)?$")  # latte.t2v_sampling.sample_stem


def prompt_of(stem):
    """'003_a_red_square_moving_left_1' -> 'a red square moving left'; None for names of other prompts."""
    match = SAMPLE_NAME.match(stem)
    prompt = match.group("words").replace("_", " ") if match else None
    return prompt if prompt and CAPTION_PATTERN.match(prompt) else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a sample.py output folder of the demo")
    parser.add_argument("--output", default="", help=f"JSON to write (default: <folder>/{RESULT_FILE})")
    args = parser.parse_args(argv)
    files = sample_files(args.folder)
    samples = [(prompt_of(stem), path) for stem, path in files.items()]
    skipped = [os.path.basename(path) for prompt, path in samples if prompt is None]
    samples = [(prompt, path) for prompt, path in samples if prompt is not None]
    if not samples:
        print(f"error: no videos of 'a <colour> <shape> moving <direction>' prompts in {args.folder} "
              f"({len(skipped)} other videos): sample with configs/inference/demo_t2v.yaml", file=sys.stderr)
        return 2
    report = score_prompt_agreement([(prompt, read_sample_video(path)) for prompt, path in samples])
    for row, (_, path) in zip(report["samples"], samples):
        row["file"] = os.path.basename(path)
    report["skipped"] = skipped
    output = args.output or os.path.join(args.folder, RESULT_FILE)
    write_json(report, output)

    for row in report["samples"]:
        print(f"{'ok ' if row['agrees'] else 'NO '} {row['prompt']:<32} seen {row['seen_colour']}, "
              f"moving {row['seen_direction']} {tuple(row['displacement'])}")
    print(f"prompt agreement {report['agreement']:.1f}% of {len(samples)} samples (colour "
          f"{report['colour']:.1f}%, direction {report['direction']:.1f}%, 4-way direction "
          f"{report['direction_4way']:.1f}%) -> {output}")
    return 0


def cli(argv=None):
    """main() with user errors (a missing or empty folder) as one `error:` line and exit code 2."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
