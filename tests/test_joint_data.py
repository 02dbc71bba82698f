"""Image-video joint training data: each clip followed by use_image_num frames of random videos with their own
labels, seeded by (seed, epoch, global position): same seed same draws, resume exact, ranks disjoint and their
union what one process with the global batch draws; from frame folders and video files."""
import os

import numpy as np
import pytest
from PIL import Image

from latte.config import ConfigError
from latte.data import DataConfig, create_video_dataset
from latte.data.synthetic import write_synthetic_dataset
from latte.io import save_video

CLASSES = ("apple", "kiwi", "pear")
VIDEOS, FRAMES, SIZE, IMAGES = 9, 6, 8, 3


def pixel(video, frame):
    """The colour of frame `frame` of video `video`: R encodes the video, G the frame (exact in PNG)."""
    return 20 * video + 5, 30 * frame + 5


def decode(image):
    """float32 (3, H, W) in [-1, 1] -> (video, frame) of a constant frame written by `frame_folders`."""
    r, g = (np.round((image[c].mean() + 1) * 127.5) for c in (0, 1))
    return int(r - 5) // 20, int(g - 5) // 30


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory):
    """VIDEOS frame folders <class>/v<video>/<frame>.png of constant frames saying (video, frame)."""
    root = tmp_path_factory.mktemp("frames")
    for v in range(VIDEOS):
        folder = root / CLASSES[v % len(CLASSES)] / f"v{v}"
        folder.mkdir(parents=True)
        for f in range(FRAMES):
            r, g = pixel(v, f)
            Image.fromarray(np.full((SIZE, SIZE, 3), (r, g, 0), np.uint8)).save(folder / f"{f:03d}.png")
    return root


def joint_config(folder, data_type="frame_folder", **extra):
    return DataConfig(data_folder=str(folder), train_data_type=data_type, sample_stride=1, num_parallel_workers=1,
                      image_video_joint=True, use_image_num=IMAGES, **extra)


def batches(config, batch_size=2, seed=7, **extra):
    dataset, info = create_video_dataset(config, SIZE, 2, batch_size, condition="class", seed=seed, **extra)
    return [dict(b) for b in dataset.create_dict_iterator(num_epochs=1, output_numpy=True)], info


def test_images_are_frames_of_random_videos_with_their_labels(frame_folders):
    got, info = batches(joint_config(frame_folders))
    assert len(got) == VIDEOS // 2
    other_videos = 0
    for batch in got:
        assert batch["video"].shape == (2, 2 + IMAGES, 3, SIZE, SIZE)
        assert batch["image_labels"].shape == (2, IMAGES) and batch["image_labels"].dtype == np.int32
        for sample, label, image_labels in zip(batch["video"], batch["label"], batch["image_labels"]):
            clip_video = decode(sample[0])[0]
            assert [decode(frame)[0] for frame in sample[:2]] == [clip_video] * 2  # the clip: one video
            assert CLASSES[clip_video % 3] == info.class_names[label]
            for image, image_label in zip(sample[2:], image_labels):
                video, frame = decode(image)
                assert 0 <= video < VIDEOS and 0 <= frame < FRAMES
                assert CLASSES[video % 3] == info.class_names[image_label]  # each image its own video's label
                other_videos += video != clip_video
    assert other_videos >= len(got) * 2 * IMAGES // 2  # images mostly from other videos


def test_same_seed_same_draws_and_resume_is_exact(frame_folders):
    config = joint_config(frame_folders)
    first, _ = batches(config)
    again, _ = batches(config)
    other, _ = batches(config, seed=8)
    resumed, _ = batches(config, start_step=2)
    for a, b in zip(first, again):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(first[0]["video"][:, 2:], other[0]["video"][:, 2:])
    for a, b in zip(first[2:], resumed):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_two_ranks_draw_disjoint_videos_and_together_what_one_process_draws(frame_folders):
    config = joint_config(frame_folders, shuffle=True)
    single, _ = batches(config, batch_size=2)
    ranks = [batches(config, batch_size=1, shard_id=r, num_shards=2)[0] for r in (0, 1)]
    clips = [{decode(b["video"][0, 0])[0] for b in rank} for rank in ranks]
    assert not clips[0] & clips[1]
    for step, batch in enumerate(single):
        for key in batch:
            union = np.concatenate([ranks[0][step][key], ranks[1][step][key]])  # rank r holds sample r of the step
            assert np.array_equal(batch[key], union), key


def test_video_files_give_frames_of_their_labelled_videos(tmp_path):
    write_synthetic_dataset(str(tmp_path), 4, 5, SIZE, layout="gif")
    config = joint_config(tmp_path, data_type="video_file")
    got, info = batches(config, batch_size=2)
    from latte.data.readers import open_video
    from latte.data.transforms import preprocess_clip

    frames = {}  # every frame of every video, prepared as the pipeline prepares images
    for cls in info.class_names:
        for name in sorted(os.listdir(tmp_path / cls)):
            reader = open_video(str(tmp_path / cls / name), "auto")
            for f, frame in enumerate(preprocess_clip(reader.get_frames(range(reader.num_frames)), SIZE)):
                frames[(name, f)] = (frame, info.class_names.index(cls))
            reader.close()
    for batch in got:
        assert batch["video"].shape == (2, 2 + IMAGES, 3, SIZE, SIZE)
        for sample, image_labels in zip(batch["video"], batch["image_labels"]):
            for image, label in zip(sample[2:], image_labels):
                match = [lab for frame, lab in frames.values() if np.array_equal(frame, image)]
                assert match and label in match


def test_joint_keys_must_agree(tmp_path):
    with pytest.raises(ConfigError, match="use_image_num: 0"):
        DataConfig(image_video_joint=True)
    with pytest.raises(ConfigError, match="image_video_joint: true"):
        DataConfig(use_image_num=4)


@pytest.mark.parametrize("name, condition, flip", [("sky", None, False), ("ucf101", "class", True),
                                                   ("ffs", None, True), ("taichi", None, True)])
def test_shipped_joint_configs_carry_the_official_settings(repo_root, name, condition, flip):
    """configs/training/<name>_img.yaml against the official configs/<name>/<name>_img_train.yaml."""
    from latte.config import load_config
    from latte.options import TrainConfig

    cfg = load_config(TrainConfig, ["-c", os.path.join(repo_root, "configs", "training", f"{name}_img.yaml")])
    official = dict(use_image_num=8, train_batch_size=4, start_learning_rate=1e-4, seed=3407, num_frames=16,
                    image_size=256, sample_stride=3, max_steps=1000000, ckpt_save_interval=10000)
    ours = dict(use_image_num=cfg.data_config.use_image_num, train_batch_size=cfg.train_batch_size,
                start_learning_rate=cfg.start_learning_rate, seed=cfg.seed, num_frames=cfg.num_frames,
                image_size=cfg.image_size, sample_stride=cfg.data_config.sample_stride, max_steps=cfg.max_steps,
                ckpt_save_interval=cfg.ckpt_save_interval)
    assert ours == official
    assert cfg.data_config.image_video_joint and cfg.condition == condition and cfg.data_config.random_flip == flip
    assert (cfg.model_name, cfg.weight_decay, cfg.ema_decay, cfg.scheduler) == ("Latte-XL/2", 0.0, 0.9999, "constant")


def test_cache_images_are_cached_frames_of_their_labelled_videos(tmp_path, vae_path):
    """From an embedding cache the images are cached latents (any frame of any video), with their videos' labels."""
    import mindspore as ms

    from latte.data import create_cache_dataset
    from latte.data.cache import read_cache_index
    from tests.cache_support import IMAGE_SIZE, cache_args, load_cached, run_tool

    videos = tmp_path / "frames"
    write_synthetic_dataset(str(videos), 4, 6, IMAGE_SIZE, layout="frame_folder")
    cache = tmp_path / "cache"
    mode = ms.get_context("mode")
    try:
        assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--condition", "class")) == 0
    finally:
        ms.set_context(mode=mode)
    index = read_cache_index(str(cache))
    classes = index.header["class_names"]
    cached = [(latent, classes[record["label"]]) for record in index.videos for latent in load_cached(cache, record)]
    config = DataConfig(data_folder=str(cache), train_data_type="numpy", sample_stride=1, num_parallel_workers=1,
                        image_video_joint=True, use_image_num=IMAGES)
    dataset, info = create_cache_dataset(config, IMAGE_SIZE, 2, 2, condition="class", seed=3)
    for batch in dataset.create_dict_iterator(num_epochs=1, output_numpy=True):
        assert batch["video"].shape == (2, 2 + IMAGES) + cached[0][0].shape
        for sample, image_labels in zip(batch["video"], batch["image_labels"]):
            for image, label in zip(sample[2:], image_labels):
                names = [name for latent, name in cached if np.array_equal(latent, image)]
                assert names and info.class_names[label] in names


def test_images_from_the_official_frame_list(frame_folders, tmp_path):
    """frame_data_txt (official train_list.txt): images only from its lines, each with its video folder's class."""
    listed = {(v, f) for v in (1, 4) for f in (0, 5)}
    txt = tmp_path / "train_list.txt"
    txt.write_text("".join(f"{CLASSES[v % 3]}/v{v}/{f:03d}.png\n" for v, f in sorted(listed)))
    config = joint_config(frame_folders, frame_data_txt=str(txt), frame_data_path=str(frame_folders))
    got, info = batches(config)
    seen = set()
    for batch in got:
        for sample, image_labels in zip(batch["video"], batch["image_labels"]):
            for image, label in zip(sample[2:], image_labels):
                video, frame = decode(image)
                assert (video, frame) in listed and info.class_names[label] == CLASSES[video % 3]
                seen.add((video, frame))
    assert len(seen) >= 3
    txt.write_text("plum/v9/000.png\n")
    with pytest.raises(ValueError, match="class 'plum', which no training video has"):
        batches(config)
    with pytest.raises(ConfigError, match="use_image_num is 0"):
        DataConfig(frame_data_txt=str(txt))
