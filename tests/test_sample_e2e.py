"""sample.py end to end: tiny official-layout Latte + tiny diffusers VAE, both converted, then videos."""
import os

import imageio.v3 as iio
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import sample  # noqa: E402
from latte.config import ConfigError  # noqa: E402
from tests.torch_latte import TorchLatte, randomize_  # noqa: E402
from tools import latte_converter, vae_converter  # noqa: E402

IMAGE, FRAMES = 32, 4  # tiny VAE below downsamples 8x -> 4x4 latents
VAE_CONFIG = dict(block_out_channels=(8, 8, 8, 8), norm_num_groups=4, layers_per_block=1, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for condition, name in ((None, "uncond"), ("class", "ucf")):
        ref = randomize_(TorchLatte(input_size=IMAGE // 8, patch_size=2, hidden_size=64, depth=4, num_heads=4,
                                    num_frames=FRAMES, num_classes=5, condition=condition), seed=4)
        torch.save({"ema": ref.state_dict()}, root / f"{name}.pt")
        assert latte_converter.main(["--source", str(root / f"{name}.pt"), "--target", str(root / f"{name}.ckpt")]) == 0
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(**VAE_CONFIG)
    vae.save_pretrained(root / "vae")
    assert vae_converter.main(["--source", str(root / "vae"), "--target", str(root / "vae.ckpt")]) == 0
    return root


def run(models, out, condition, *extra):
    common = ["--model_name", "Latte-T/2", "--image_size", IMAGE, "--num_frames", FRAMES, "--device_target", "CPU",
              "--vae_checkpoint", models / "vae.ckpt", "--output_path", out, "--num_samples", 2, "--batch_size", 2,
              "--sampling_steps", 4, "--seed", 7, "--save_format", "both", "--fps", 4]
    if condition == "class":
        common += ["--condition", "class", "--num_classes", 5, "--checkpoint", models / "ucf.ckpt"]
    else:
        common += ["--checkpoint", models / "uncond.ckpt"]
    return sample.main([str(a) for a in common + list(extra)])


@pytest.mark.parametrize("condition, extra", [
    (None, ["--ddim_sampling", "False"]),
    (None, ["--ddim_sampling", "True", "--save_trajectory", "True", "--trajectory_stride", "2"]),
    ("class", ["--ddim_sampling", "True", "--guidance_scale", "4.0", "--class_labels", "[1, 3]"]),
    ("class", ["--ddim_sampling", "False", "--guidance_scale", "4.0"]),
])
@pytest.mark.slow
def test_videos_written_and_reproducible(tmp_path, models, condition, extra):
    first = run(models, tmp_path / "a", condition, *extra)
    second = run(models, tmp_path / "b", condition, *extra)
    names = sorted(n for n in os.listdir(first) if n.endswith((".gif", ".mp4")))
    prefix = "sample_000_class1" if "[1, 3]" in extra else "sample_000"
    assert any(n.startswith(prefix) for n in names)
    assert len([n for n in names if n.endswith(".mp4")]) == 2
    for name in names:
        frames = iio.imread(os.path.join(first, name), index=None)
        if "trajectory" not in name:
            assert frames.shape[0] == FRAMES or name.endswith(".gif"), name  # GIFs may merge equal frames
            assert frames.shape[1:3] == (IMAGE, IMAGE), name
        with open(os.path.join(first, name), "rb") as a, open(os.path.join(second, name), "rb") as b:
            assert a.read() == b.read(), f"{name} differs between two runs with the same seed"
    assert os.path.exists(os.path.join(first, "first_frames.png"))
    assert os.path.exists(os.path.join(first, "config.yaml"))


def test_mp4_holds_every_frame_and_display_scale_enlarges(tmp_path, models):
    out = run(models, tmp_path / "a", None, "--ddim_sampling", "True", "--display_scale", "2")
    mp4 = iio.imread(os.path.join(out, "sample_000.mp4"), index=None)
    assert mp4.shape == (FRAMES, 2 * IMAGE, 2 * IMAGE, 3)


def test_resample_rounds_reach_the_sampler(tmp_path, models, monkeypatch):
    """--resample_rounds n takes each denoising step n times (the last once): 4 steps with 3 rounds are 10 calls."""
    from latte.diffusion.sampler import DenoiseStep

    calls = []

    def counting_call(self, *args):
        calls.append(1)
        return super(DenoiseStep, self).__call__(*args)

    monkeypatch.setattr(DenoiseStep, "__call__", counting_call, raising=False)
    plain = run(models, tmp_path / "a", None, "--ddim_sampling", "False")
    assert len(calls) == 4
    resampled = run(models, tmp_path / "b", None, "--ddim_sampling", "False", "--resample_rounds", "3")
    assert len(calls) == 4 + 4 + 3 * 2
    with open(os.path.join(plain, "sample_000.gif"), "rb") as a:
        with open(os.path.join(resampled, "sample_000.gif"), "rb") as b:
            assert a.read() != b.read()


@pytest.mark.parametrize("extra, needle", [
    (["--num_frames", "8"], "temp_embed: checkpoint (1, 4, 64) vs model (1, 8, 64) (check num_frames)"),
    (["--image_size", "64"], "check image_size"),
    (["--guidance_scale", "7.0"], "needs a class-conditional model"),
    (["--dtype", "bf16"], "bf16"),
    (["--checkpoint", "missing.ckpt"], "not found"),
    (["--checkpoint", "official.pt"], "convert it first"),
])
def test_bad_inputs_are_one_clear_error(tmp_path, models, extra, needle):
    with pytest.raises((ValueError, ConfigError)) as err:
        run(models, tmp_path / "bad", None, *extra)
    assert needle in str(err.value)


def test_class_label_out_of_range(tmp_path, models):
    with pytest.raises(ConfigError, match="out of range"):
        run(models, tmp_path / "bad", "class", "--class_labels", "[5]")
