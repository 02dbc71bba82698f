"""The measure of done for mindone users (issue 17): a folder laid out as a mindone Latte user's runs to the end.

Their configs/ tree (tests/fixtures/mindone/configs: our own copies of the key sets of mindone's
examples/latte/configs/**.yaml with their values), a VAE at models/sd-vae-ft-mse.ckpt, Sky frame folders
(sky_train/<video>/<video>_frames_<n>.jpg) and the toy CSV example's folder with its caption CSV. Then, from that
folder: their documented cache command (numpy and mindrecord), every training yaml for one step and every inference
yaml from a checkpoint trained so. Only data paths and tiny sizes are given on the command line."""
import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)
from tests.cache_support import write_tiny_vae

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "mindone", "configs")
SKY_VIDEOS, FRAMES_PER_VIDEO, FRAME_SIZE = ("07U1fSrk9oI_1", "0Ocx7VQ0P_0"), 10, (40, 36)  # (W, H) not square
TOY_FOLDER = "imagenet_samples/videos"  # where the toy CSV yaml looks, relative to the user's folder
TINY = ["--image_size", "32", "--num_frames", "4", "--model_name", "Latte-T/2", "--train_batch_size", "1"]
TINY_SAMPLE = ["--image_size", "32", "--num_frames", "4", "--model_name", "Latte-T/2", "--sampling_steps", "2"]
RUN = ["--device_target", "CPU", "--mode", "1"]  # the machine: pynative runs one tiny step twice as fast as graph


def write_frames(folder, name, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, name))
    for n in range(FRAMES_PER_VIDEO):
        pixels = rng.integers(0, 256, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, name, f"{name}_frames_{n:08d}.jpg"))


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's folder, made the working directory (their paths are relative to it)."""
    shutil.copytree(FIXTURES, tmp_path / "configs")
    os.makedirs(tmp_path / "models")
    write_tiny_vae(tmp_path / "models" / "sd-vae-ft-mse.ckpt")
    for seed, name in enumerate(SKY_VIDEOS):
        write_frames(str(tmp_path / "sky_train"), name, seed)
    for seed, name in enumerate(("goldfish_clip", "tabby_clip")):
        write_frames(str(tmp_path / TOY_FOLDER), name, 10 + seed)
    with open(tmp_path / TOY_FOLDER / "video_caption.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "caption"])
        writer.writerows([["goldfish_clip", "a goldfish swimming"], ["tabby_clip", "a tabby cat"]])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def last_ema(out):
    ckpts = sorted(p for p in os.listdir(os.path.join(out, "ckpt")) if p.endswith("-ema.ckpt"))
    assert ckpts, os.listdir(os.path.join(out, "ckpt"))
    return os.path.join(out, "ckpt", ckpts[-1])


@pytest.mark.slow
def test_a_mindone_users_folder_runs_every_config_to_the_end(user):
    import sample
    import train
    from tools import embedding_cache
    from tools import mindone_cache

    # 1. Their documented cache command, numpy and mindrecord
    for kind in ("numpy", "mindrecord"):
        assert embedding_cache.main(["--config", "configs/training/sky_video.yaml", "--cache_folder", f"cache_{kind}",
                                     "--cache_file_type", kind, "--data_config.data_folder", "sky_train",
                                     "--image_size", "32", *RUN]) == 0

    # 2. A mindone npz cache of these videos (mindone's earlier writer: <video>.npz with video_latent and video),
    # converted as a mindone user converts theirs
    from latte.data.cache import read_cache_index

    os.makedirs("mindone_npz")
    for record in read_cache_index("cache_numpy").videos:
        np.savez_compressed(os.path.join("mindone_npz", record["name"] + ".npz"), video=record["name"],
                            video_latent=np.load(os.path.join("cache_numpy", record["file"])))
    assert mindone_cache.main(["--source", "mindone_npz", "--cache_folder", "cache_npz"]) == 0

    # 3. Every training yaml, one step
    data = {"sky_video": "sky_train", "sky_image_video": "sky_train", "sky_image-video": "sky_train",
            "sky_numpy_video": "cache_numpy", "sky_mindrecord_video": "cache_mindrecord", "sky_npz_video": "cache_npz"}
    trained = {}
    names = sorted(n[:-len(".yaml")] for n in os.listdir("configs/training") if n.endswith(".yaml"))
    assert len(names) == 9 and len(os.listdir("configs/inference")) == 3  # with the 6 data yaml files: all 18
    names.append(names.pop(names.index("toy_csv_video_ft")))  # fine-tunes what toy_csv_video_train trained
    for stem in names:
        args = ["-c", f"configs/training/{stem}.yaml", *TINY, "--max_steps", "1", "--output_path", f"out/{stem}", *RUN]
        if stem in data:
            args += ["--data_config.data_folder", data[stem]]
        if stem == "toy_csv_video":  # the one class yaml without num_classes trains the ucf101 inference yaml's model
            args += ["--num_classes", "101"]
        if stem == "toy_csv_video_ft":
            args += ["--pretrained_model_path", trained["toy_csv_video_train"]]
        assert train.main(args) == 1, stem
        trained[stem] = last_ema(f"out/{stem}")

    # 4. Every inference yaml, from a checkpoint trained so
    sources = {"sky": "sky_video", "ucf101": "toy_csv_video", "toy_csv": "toy_csv_video_train"}
    for name in sorted(os.listdir("configs/inference")):
        stem = name[:-len(".yaml")]
        run_dir = sample.main(["-c", f"configs/inference/{name}", "--checkpoint", trained[sources[stem]],
                               *TINY_SAMPLE, "--output_path", f"samples/{stem}", *RUN])
        assert any(f.endswith(".gif") for f in os.listdir(run_dir)), stem
