"""Image-video joint training of a LatteT2V: the loss against the official joint forward (tests/
torch_latte_t2v_joint.py) with per-caption dropout; the data (each image with its own video's caption: token ids
from captioned videos, T5 states from a text cache); train.py 2 steps (T5 in the step), then sample.py with a
prompt; and from a text cache in graph mode (the compiled joint step)."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

import sample  # noqa: E402
import train  # noqa: E402
from latte.config import load_config  # noqa: E402
from latte.data import DataConfig, create_cache_dataset  # noqa: E402
from latte.data.sources import get_source_type  # noqa: E402
from latte.diffusion import create_diffusion  # noqa: E402
from latte.env import RunContext  # noqa: E402
from latte.options import TrainConfig  # noqa: E402
from latte.random_streams import Stream  # noqa: E402
from latte.text.tokenizer import T5Tokenizer  # noqa: E402
from latte.training.text_loss import LatteT2VTrainLoss  # noqa: E402
from latte.training.data import create_training_dataset  # noqa: E402
from tests.cache_support import IMAGE_SIZE  # noqa: E402
from tests.cache_support import restore_mindspore_mode  # noqa: E402,F401  (autouse fixture)
from tests.test_joint_t2v import JOINT_MASK, LENGTH, NUM_IMAGES  # noqa: E402
from tests.test_latte_t2v import TINY, random_reference  # noqa: E402
from tests.test_t2v_train import TEXT_LENGTH, latte_t2v_from, run_files, text_files, train_args  # noqa: E402,F401
from tests.test_text_cache import MAX_LENGTH, text_args, text_encoder, videos  # noqa: E402,F401
from tests.cache_support import load_cached, load_cached_text, run_tool  # noqa: E402
from tests.torch_latte_t2v_joint import official_joint_forward  # noqa: E402

JOINT = ["--data_config.image_video_joint", "True", "--data_config.use_image_num", str(NUM_IMAGES)]
CHANNELS = TINY["in_channels"]


def test_joint_loss_covers_frames_and_images_with_their_captions():
    """mse = mean over all F + n frames of (noise - eps)^2, eps from the official joint forward given the clip's
    caption (dropped by drop) and each image's (dropped together by image_drop) -> the null caption."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref = random_reference(seed=8)
    frames, b = TINY["video_length"], 2
    r = np.random.default_rng(3)
    x0 = r.uniform(-1, 1, (b, frames + NUM_IMAGES, CHANNELS, TINY["sample_size"], TINY["sample_size"]))
    x0 = x0.astype(np.float32)
    noise = r.standard_normal(x0.shape).astype(np.float32)
    t = np.array([40, 620], np.int32)
    states = r.standard_normal((b, 1 + NUM_IMAGES, LENGTH, TINY["caption_channels"])).astype(np.float32)
    null = (r.standard_normal((1, LENGTH, TINY["caption_channels"])).astype(np.float32),
            np.array([[1, 1, 0, 0, 0, 0, 0]], np.int32))
    drop, image_drop = np.array([1, 0], np.int32), np.array([0, 1], np.int32)
    want_states, want_mask = states.copy(), JOINT_MASK.copy()
    want_states[0, 0], want_mask[0, 0] = null[0][0], null[1][0]  # sample 0: the clip's caption dropped
    want_states[1, 1:], want_mask[1, 1:] = null[0][0], null[1][0]  # sample 1: both images' captions dropped

    diffusion = create_diffusion("")
    loss = LatteT2VTrainLoss(latte_t2v_from(ref), diffusion, null)
    _, mse, vb = loss(*map(Tensor, (x0, t, noise, np.zeros_like(x0), drop, states, JOINT_MASK, image_drop)))
    a = np.sqrt(diffusion.alphas_cumprod)[t].reshape(-1, 1, 1, 1, 1)
    x_t = (a * x0 + np.sqrt(1 - a ** 2) * noise).astype(np.float32)
    out = official_joint_forward(ref, torch.from_numpy(x_t), torch.from_numpy(t.astype(np.int64)),
                                 torch.from_numpy(want_states), torch.from_numpy(want_mask), NUM_IMAGES).numpy()
    eps = out[:, :, :CHANNELS]
    np.testing.assert_allclose(float(mse.asnumpy()), np.mean((noise - eps) ** 2), rtol=2e-4)
    assert float(vb.asnumpy()) > 0
    video_only = np.mean((noise[:, :frames] - eps[:, :frames]) ** 2)
    assert abs(video_only - np.mean((noise - eps) ** 2)) > 1e-3  # the images count
    undropped = official_joint_forward(ref, torch.from_numpy(x_t), torch.from_numpy(t.astype(np.int64)),
                                       torch.from_numpy(states), torch.from_numpy(JOINT_MASK), NUM_IMAGES)
    assert abs(np.mean((noise - undropped.numpy()[:, :, :CHANNELS]) ** 2) - np.mean((noise - eps) ** 2)) > 1e-5


def rendered_videos(data_config, image_size):
    """(caption, every frame as training prepares it (F, 3, H, W)) of each video of the data config."""
    source = get_source_type(data_config.train_data_type)
    out = []
    for entry in source.list_videos(data_config, image_size):
        reader = source.open_video(entry, data_config, image_size)
        out.append((entry.caption, source.to_sample(reader.get_frames(range(reader.num_frames)), image_size)))
        reader.close()
    return out


def test_images_come_with_their_own_videos_captions(run_files, tmp_path):
    """Captioned synthetic videos: text_ids (B, 1 + n, L): the clip's caption, then each image's, the caption of
    the video the image is a frame of; image_drop is the seeded per-sample draw."""
    cfg = load_config(TrainConfig, train_args(run_files, tmp_path, "--train_batch_size", 2, "--seed", 5, *JOINT))
    dataset, info = create_training_dataset(cfg, RunContext("CPU", 1), start_step=1, num_timesteps=1000)
    batch = next(dataset.create_dict_iterator(num_epochs=1, output_numpy=True))
    assert batch["text_ids"].shape == batch["text_mask"].shape == (2, 1 + NUM_IMAGES, TEXT_LENGTH)
    assert batch["video"].shape[1] == 2 + NUM_IMAGES
    tokenizer = T5Tokenizer(run_files["tokenizer"])
    videos = rendered_videos(cfg.data_config, 32)
    for i, (sample_frames, ids) in enumerate(zip(batch["video"], batch["text_ids"])):
        for j, frame in enumerate(sample_frames[2:]):
            captions = {c for c, frames in videos if any(np.array_equal(frame, f) for f in frames)}
            assert captions, "each image is a frame of a training video"
            tokens = {tuple(tokenizer([c], TEXT_LENGTH)[0][0]) for c in captions}
            assert tuple(ids[1 + j]) in tokens
        rng = np.random.default_rng([5, Stream.TRAIN_IMAGE_DROP, 2 + i])  # start_step 1, batch 2
        assert batch["image_drop"][i] == int(rng.random(dtype=np.float32) < 0.5)


@pytest.mark.slow
def test_joint_t2v_train_then_sample_with_a_prompt(run_files, tmp_path):
    out = tmp_path / "run"
    assert train.main(train_args(run_files, out, "--max_steps", 2, *JOINT)) == 2
    ema = out / "ckpt" / "latte-0000002-ema.ckpt"
    run_dir = sample.main(["--checkpoint", str(ema), "--prompt", "a circle", "--device_target", "CPU", "--mode", "1",
                           "--sampling_steps", "2", "--output_path", str(tmp_path / "s")])
    assert os.path.getsize(os.path.join(run_dir, "000_a_circle.mp4")) > 0


@pytest.fixture(scope="module")
def numpy_text_cache(tmp_path_factory, vae_path, videos, text_encoder):  # noqa: F811
    cache = tmp_path_factory.mktemp("numpy") / "cache"
    assert run_tool(*text_args(videos, cache, vae_path, text_encoder, "numpy")) == 0
    return cache


def test_text_cache_gives_each_image_its_videos_states(numpy_text_cache):
    """From a text cache, image j's T5 states and mask are those cached with the video whose latents hold it."""
    from latte.data.cache import read_cache_index

    index = read_cache_index(str(numpy_text_cache))
    files = [(load_cached(numpy_text_cache, v),) + tuple(load_cached_text(numpy_text_cache, v))
             for v in index.videos]
    config = DataConfig(data_folder=str(numpy_text_cache), train_data_type="numpy", sample_stride=1,
                        num_parallel_workers=1, image_video_joint=True, use_image_num=NUM_IMAGES)
    dataset, _ = create_cache_dataset(config, IMAGE_SIZE, 3, 2, condition="text", seed=4)
    for batch in dataset.create_dict_iterator(num_epochs=1, output_numpy=True):
        assert batch["text_states"].shape[:3] == (2, 1 + NUM_IMAGES, MAX_LENGTH)
        for sample_latents, states, mask in zip(batch["video"], batch["text_states"], batch["text_mask"]):
            for j, latent in enumerate(sample_latents[3:]):
                owners = [k for k, (latents, _, _) in enumerate(files)
                          if any(np.array_equal(latent, f) for f in latents)]
                assert owners
                assert any(np.array_equal(states[1 + j], files[k][1]) and np.array_equal(mask[1 + j], files[k][2])
                           for k in owners)


@pytest.mark.slow
def test_joint_t2v_train_from_text_cache(numpy_text_cache, text_encoder, vae_path, tmp_path):  # noqa: F811
    args = ["--model_name", "Latte-1-T", "--condition", "text", "--image_size", IMAGE_SIZE, "--num_frames", 2,
            "--device_target", "CPU", "--mode", 0, "--vae_checkpoint", vae_path, "--text_encoder", text_encoder[0],
            "--tokenizer", text_encoder[1], "--max_text_length", MAX_LENGTH, "--train_batch_size", 2,
            "--caption_dropout_prob", 0.5, "--max_steps", 2, "--step_mode", True, "--ckpt_save_interval", 2,
            "--data_config.train_data_type", "numpy", "--data_config.data_folder", numpy_text_cache,
            "--data_config.sample_stride", 1, "--data_config.num_parallel_workers", 1,
            "--output_path", tmp_path / "run", *JOINT]
    assert train.main([str(a) for a in args]) == 2
    assert (tmp_path / "run" / "ckpt" / "latte-0000002-ema.ckpt").exists()


def test_frame_list_has_no_captions_for_text_models(tmp_path):
    from latte.data import DataError, create_video_dataset

    config = DataConfig(data_folder=str(tmp_path), train_data_type="synthetic", synthetic_captions=True,
                        image_video_joint=True, use_image_num=NUM_IMAGES, frame_data_txt="train_list.txt")
    with pytest.raises(DataError, match="frame_data_txt lists frames without captions"):
        create_video_dataset(config, 16, 2, 1, condition="text")
