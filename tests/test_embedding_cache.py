"""tools/embedding_cache.py: cached latents equal a direct VAE encode; layouts, labels, bad videos, CLI errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from latte.data import write_synthetic_dataset
from latte.data.cache import NUMPY_FOLDER, read_cache_index
from tests.cache_support import (
    IMAGE_SIZE, SCALE, cache_args, direct_latents, load_cached, run_tool, source_frames, write_mp4_folder,
    write_tiny_vae,
)
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mp4s(tmp_path_factory):
    return write_mp4_folder(tmp_path_factory.mktemp("mp4s"))


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frames"))
    write_synthetic_dataset(folder, n_videos=4, n_frames=11, size=(40, 48), layout="frame_folder")
    return folder


@pytest.mark.parametrize("file_type,dtype", [("numpy", "float32"), ("mindrecord", "float16")])
def test_mp4_cache_equals_direct_encoding_and_skips_broken_files(tmp_path, vae_path, mp4s, file_type, dtype, capsys):
    cache = tmp_path / "cache"
    # mindrecord: 16-frame rows (bikes: 250 frames = 16 rows, the last of 10) and one file per video
    code = run_tool(*cache_args(mp4s, cache, vae_path, "video_file", "--cache_file_type", file_type,
                                "--save_data_type", dtype, "--frames_per_batch", 6, "--segment_frames", 16,
                                "--videos_per_file", 1))
    out = capsys.readouterr().out
    assert code == 0
    assert "saved 2 videos, failed 2" in out
    assert "bikes/noise.mp4" in out and "phone/cut.mp4" in out

    index = read_cache_index(str(cache))
    header = index.header
    assert header["file_type"] == file_type and header["dtype"] == dtype and header["latents"] == "mean"
    assert header["image_size"] == [IMAGE_SIZE, IMAGE_SIZE] and header["latent_shape"] == [4, 4, 4]
    assert header["scale_factor"] == SCALE and header["vae_checkpoint"] == os.path.abspath(vae_path)
    assert header["source"]["num_videos"] == 4
    assert {f["name"] for f in index.failed} == {"bikes/noise.mp4", "phone/cut.mp4"}
    assert [(v["name"], v["frames"]) for v in index.videos] == [("bikes/bikes.mp4", 250), ("phone/carphone.mp4", 120)]
    if file_type == "mindrecord":
        assert len({v["file"] for v in index.videos}) == 2  # one committed file per video
    assert not os.path.exists(cache / ".tmp-rank0")

    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=2e-3, atol=2e-3)
    for record in index.videos:
        cached = load_cached(cache, record)
        assert cached.dtype == np.dtype(dtype) and cached.shape == (record["frames"], 4, 4, 4)
        expected = direct_latents(vae_path, source_frames(mp4s, "video_file", record["name"]))
        np.testing.assert_allclose(cached.astype(np.float32), expected, **tolerance)


def test_frame_folders_with_labels_and_posterior_samples(tmp_path, vae_path, frame_folders):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(frame_folders, cache, vae_path, "frame_folder", "--condition", "class",
                                "--sample_latents", "True", "--seed", 7,
                                "--frames_per_batch", 4)) == 0
    index = read_cache_index(str(cache))
    assert index.header["class_names"] == ["circle", "square", "triangle"]
    assert index.header["latents"] == "sample" and index.header["noise_seed"] == 7
    assert len(index.videos) == 4 and not index.failed
    for record in index.videos:
        assert index.header["class_names"][record["label"]] == record["name"].split("/")[0]
        assert record["file"] == f"{NUMPY_FOLDER}/0000/{record['id']:07d}.npy"
        # the noise of video i is drawn from (seed, stream 3, i) in frame order, as encode_video draws it
        rng = np.random.default_rng([7, 3, record["id"]])
        expected = direct_latents(vae_path, source_frames(frame_folders, "frame_folder", record["name"]), rng)
        np.testing.assert_allclose(np.load(cache / record["file"]), expected, rtol=1e-5, atol=1e-5)
        assert np.load(cache / record["file"], mmap_mode="r").shape == (11, 4, 4, 4)


def test_other_settings_in_the_same_folder_are_refused(tmp_path, vae_path, frame_folders, capsys):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(frame_folders, cache, vae_path, "frame_folder", "--max_videos", 1)) == 0
    capsys.readouterr()
    assert run_tool(*cache_args(frame_folders, cache, vae_path, "frame_folder", "--save_data_type", "float16")) == 2
    err = capsys.readouterr().err
    assert "already holds a cache written with other settings" in err and "dtype: 'float32' vs 'float16'" in err


def test_page_size_is_checked_against_one_row(tmp_path, vae_path, frame_folders, capsys):
    # at 256x256 a latent frame is 4x32x32 float32 = 16 KiB: 200 of them are 3.1 MiB, more than a 1 MiB page
    args = cache_args(frame_folders, tmp_path / "c", vae_path, "frame_folder", "--cache_file_type", "mindrecord",
                      "--image_size", 256, "--segment_frames", 200, "--max_page_size", 1)
    assert run_tool(*args) == 2
    err = capsys.readouterr().err
    assert "segment_frames=200" in err and "max_page_size=1 MiB" in err and "set segment_frames <= 63" in err


def test_config_errors_name_the_key(tmp_path, vae_path, frame_folders, capsys):
    base = cache_args(frame_folders, tmp_path / "c", vae_path, "frame_folder")
    assert run_tool(*base, "--cache_foldr", "x") == 2
    assert "did you mean 'cache_folder'" in capsys.readouterr().err
    assert run_tool(*base, "--cache_file_type", "npz") == 2
    assert "cache_file_type='npz' is not one of ['numpy', 'mindrecord']" in capsys.readouterr().err
    assert run_tool(*base, "--vae_checkpoint", "") == 2
    assert "vae_checkpoint is empty" in capsys.readouterr().err
    assert run_tool(*base, "--rank", 2, "--world_size", 2) == 2
    assert "expected 0 <= rank < world_size" in capsys.readouterr().err


def test_a_failure_prints_where_to_continue(tmp_path, vae_path, frame_folders, monkeypatch, capsys):
    from latte.data import cache_writers

    original, calls = cache_writers.NumpyCacheWriter.add, []

    def add_then_fail(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cache_writers.NumpyCacheWriter, "add", add_then_fail)
    assert run_tool(*cache_args(frame_folders, tmp_path / "c", vae_path, "frame_folder", "--resume_cache_index", 1)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "started at index 1: saved 2 videos, failed 0" in err
    assert "continue with --resume_cache_index 3" in err


def test_help_documents_every_flag():
    proc = subprocess.run([sys.executable, "tools/embedding_cache.py", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2"))
    assert proc.returncode == 0, proc.stderr
    for flag in ("--cache_folder", "--cache_file_type", "--save_data_type", "--sample_latents", "--frames_per_batch",
                 "--resume_cache_index", "--max_videos", "--rank", "--world_size", "--segment_frames",
                 "--videos_per_file", "--max_page_size", "--vae_dtype", "--data_config.data_folder", "--config"):
        assert flag in proc.stdout, flag


def test_manifest_lines_are_self_describing(tmp_path, vae_path, frame_folders):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(frame_folders, cache, vae_path, "frame_folder", "--max_videos", 2)) == 0
    lines = (cache / "manifest.rank0.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["record"] == "header"
    assert [json.loads(line)["id"] for line in lines[1:]] == [0, 1]


def test_a_full_disk_shows_mindspores_reason_and_the_free_space(tmp_path, vae_path, frame_folders, capsys):
    """A real full disk (a 3 MiB tmpfs): MindRecord refuses to write; the error says why (MindSpore's reason, not
    its 'Refer to Dataset Pipeline Error Message' first line) and how much space is free; no empty part is left."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        cache = disk / "c"
        assert run_tool(*cache_args(frame_folders, cache, vae_path, "frame_folder", "--cache_file_type",
                                    "mindrecord")) == 1
        err = capsys.readouterr().err
        assert "No free disk to be used while writing mindrecord files" in err, err
        assert "Refer to" not in err and "MiB free in" in err and "continue with --resume_cache_index 0" in err
        assert not (cache / "mindrecord").exists() or not os.listdir(cache / "mindrecord")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_the_mindrecord_progress_bar_ends_with_what_was_saved(tmp_path, vae_path, frame_folders, capsys):
    """MindRecord commits its file after the last video: the bar's last state must show it (not saved=0)."""
    assert run_tool(*cache_args(frame_folders, tmp_path / "c", vae_path, "frame_folder", "--cache_file_type",
                                "mindrecord")) == 0
    err = capsys.readouterr().err
    assert "saved=" in err, err[-500:]
    assert err.rsplit("saved=", 1)[1].startswith("4"), err[-300:]
