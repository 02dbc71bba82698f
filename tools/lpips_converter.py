"""Convert torchvision's VGG16 weights and the lpips package's linear heads into one MindSpore LPIPS checkpoint.

    python tools/lpips_converter.py --vgg vgg16-397923af.pth --lin vgg.pth --target models/lpips_vgg.ckpt

--vgg: torchvision's ImageNet VGG16 (https://download.pytorch.org/models/vgg16-397923af.pth): the 13 conv layers of
`features` are used; its fully connected `classifier` is not part of LPIPS and is listed as unused.
--lin: lpips' `weights/v0.1/vgg.pth` (inside the lpips wheel: pip download --no-deps lpips, then unzip it),
holding lin0..lin4.model.1.weight. Torch is not needed. Every other key is an error, every shape is checked; then
set lpips_checkpoint to the target in a tools/train_vae.py config.
"""
import argparse
import sys

from latte.checkpoint_io import CheckpointError, meta_path, save_ms_checkpoint
from latte.convert.io import check_mapping, cli_main, read_state_dict, strip_prefixes
from latte.vae_training.lpips import LPIPS, VGG16_CHANNELS, convert_lpips_state, load_lpips, lpips_meta

STRIPPED_PREFIXES = ("module.", "_orig_mod.")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vgg", required=True, help="torchvision vgg16 weights (.pth), e.g. vgg16-397923af.pth")
    parser.add_argument("--lin", required=True,
                        help="lpips linear heads for VGG (.pth), e.g. lpips/weights/v0.1/vgg.pth")
    parser.add_argument("--target", required=True, help="MindSpore checkpoint to write (.ckpt)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.target.endswith(".ckpt"):
        raise CheckpointError(f"--target {args.target}: MindSpore checkpoints must end in .ckpt")

    # 1. Read both files (torch-free)
    vgg = strip_prefixes(read_state_dict(args.vgg, prefer=("state_dict", "model")), STRIPPED_PREFIXES)
    lin = strip_prefixes(read_state_dict(args.lin, prefer=("state_dict", "model")), STRIPPED_PREFIXES)
    print(f"[1/4] read {len(vgg)} tensors from {args.vgg} and {len(lin)} from {args.lin}")

    # 2. Rename to the LPIPS cell's names
    params, head, unknown = convert_lpips_state(vgg, lin)
    print(f"[2/4] mapped {len(params)} tensors" + (f"; unused VGG classifier head: {', '.join(sorted(head))}"
                                                   if head else ""))

    # 3. Every parameter filled, every shape as the cell expects, no unknown key
    expected = {p.name: tuple(p.shape) for p in LPIPS(VGG16_CHANNELS).get_parameters()}
    check_mapping(params, expected, unknown, what=f"--vgg {args.vgg} + --lin {args.lin}")
    print(f"[3/4] all {len(expected)} parameters filled (13 VGG16 convs, 5 linear heads), shapes checked")

    # 4. Write, then load back strictly
    meta = lpips_meta(VGG16_CHANNELS, vgg_source=args.vgg, lin_source=args.lin)
    save_ms_checkpoint(params, args.target, meta)
    load_lpips(args.target)
    print(f"[4/4] wrote {args.target} and {meta_path(args.target)}; set lpips_checkpoint: {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
