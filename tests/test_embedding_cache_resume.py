"""Resuming caches: only missing videos are written, stopped runs keep what they finished, ranks merge."""
import json
import os
import shutil

import numpy as np
import pytest

from latte.data import cache_writers, write_synthetic_dataset
from latte.data.cache import read_cache_index
from tests.cache_support import cache_args, load_cached, run_tool
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)

N_VIDEOS = 5


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frames"))
    write_synthetic_dataset(folder, n_videos=N_VIDEOS, n_frames=9, size=32, layout="frame_folder")
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, vae_path, videos):
    """An uninterrupted single-process numpy cache: name -> latents."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder")) == 0
    return {v["name"]: load_cached(cache, v) for v in read_cache_index(str(cache)).videos}


def count_adds(monkeypatch, writer_class):
    added, original = [], writer_class.add

    def add(self, video_id, *args, **kwargs):
        added.append(video_id)
        return original(self, video_id, *args, **kwargs)

    monkeypatch.setattr(writer_class, "add", add)
    return added


def assert_equals_reference(cache, reference, n=N_VIDEOS):
    videos = read_cache_index(str(cache)).videos
    assert [v["id"] for v in videos] == list(range(n))
    for v in videos:
        np.testing.assert_array_equal(load_cached(cache, v), reference[v["name"]])


def test_rerun_writes_exactly_the_missing_videos(tmp_path, vae_path, videos, reference, monkeypatch, capsys):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--max_videos", 2)) == 0
    assert "saved 2 videos, failed 0" in capsys.readouterr().out
    files = {v["file"]: os.stat(cache / v["file"]).st_mtime_ns for v in read_cache_index(str(cache)).videos}
    assert len(files) == 2

    added = count_adds(monkeypatch, cache_writers.NumpyCacheWriter)
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder")) == 0
    assert added == [2, 3, 4]
    assert "saved 3 videos, failed 0 (2 of this rank's 5 were cached already)" in capsys.readouterr().out
    assert {f: os.stat(cache / f).st_mtime_ns for f in files} == files  # never rewritten
    assert_equals_reference(cache, reference)

    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder")) == 0
    assert added == [2, 3, 4]


def test_resume_cache_index_skips_the_videos_before_it(tmp_path, vae_path, videos, reference, capsys):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--resume_cache_index", 3)) == 0
    assert "started at index 3: saved 2 videos" in capsys.readouterr().out
    assert [v["id"] for v in read_cache_index(str(cache)).videos] == [3, 4]


def test_torn_manifest_line_and_temp_files_are_never_read(tmp_path, vae_path, videos, reference):
    cache = tmp_path / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--max_videos", 2)) == 0
    # what a kill leaves: half of a line, and a half-written file in the rank's temp folder
    with open(cache / "manifest.rank0.jsonl", "a") as f:
        f.write('{"file": "latents/0000/0000002.npy", "fra')
    os.makedirs(cache / ".tmp-rank0")
    (cache / ".tmp-rank0" / "0000002.npy").write_bytes(b"\x93NUMPY half")
    assert [v["id"] for v in read_cache_index(str(cache)).videos] == [0, 1]

    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder")) == 0
    lines = (cache / "manifest.rank0.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the torn line was cut before appending
    assert not os.path.exists(cache / ".tmp-rank0")
    assert_equals_reference(cache, reference)


def test_mindrecord_stop_commits_finished_videos_and_resume_replaces_orphans(tmp_path, vae_path, videos, reference,
                                                                               monkeypatch, capsys):
    cache = tmp_path / "cache"
    args = cache_args(videos, cache, vae_path, "frame_folder", "--cache_file_type", "mindrecord",
                      "--videos_per_file", 2, "--segment_frames", 4)
    original, calls = cache_writers.MindRecordCacheWriter.add, []

    def add_then_fail(self, video_id, *rest):
        calls.append(video_id)
        if video_id == 3:
            raise KeyboardInterrupt
        return original(self, video_id, *rest)

    monkeypatch.setattr(cache_writers.MindRecordCacheWriter, "add", add_then_fail)
    assert run_tool(*args) == 1
    err = capsys.readouterr().err
    assert "KeyboardInterrupt" in err and "saved 3 videos, failed 0" in err
    assert "continue with --resume_cache_index 3" in err
    index = read_cache_index(str(cache))
    assert [(v["id"], v["file"].split("/")[1]) for v in index.videos] == [
        (0, "part-0000000"), (1, "part-0000000"), (2, "part-0000002")]  # video 2's open chunk was committed

    # a chunk renamed into place by a run killed before writing its manifest lines: unnamed, so replaced
    shutil.copytree(cache / "mindrecord" / "part-0000000", cache / "mindrecord" / "part-0000003")
    monkeypatch.setattr(cache_writers.MindRecordCacheWriter, "add", original)
    added = count_adds(monkeypatch, cache_writers.MindRecordCacheWriter)
    assert run_tool(*args) == 0
    assert added == [3, 4]
    assert_equals_reference(cache, reference)  # mindrecord float32 == numpy float32, bit for bit


def test_ranks_write_their_own_manifests_and_the_loader_merges_them(tmp_path, vae_path, videos, reference):
    cache = tmp_path / "cache"
    for rank in (1, 0):
        assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--rank", rank, "--world_size", 2)) == 0
    for rank, ids in ((0, [0, 2, 4]), (1, [1, 3])):
        lines = (cache / f"manifest.rank{rank}.jsonl").read_text().splitlines()[1:]
        assert [json.loads(line)["id"] for line in lines] == ids
    assert_equals_reference(cache, reference)


def test_manifests_of_different_caches_in_one_folder_are_an_error(tmp_path, vae_path, videos):
    from latte.data import DataError

    cache = tmp_path / "cache"
    assert run_tool(*cache_args(videos, cache, vae_path, "frame_folder", "--max_videos", 1)) == 0
    other = json.loads((cache / "manifest.rank0.jsonl").read_text().splitlines()[0])
    other["dtype"] = "float16"
    (cache / "manifest.rank1.jsonl").write_text(json.dumps(other) + "\n")
    with pytest.raises(DataError, match="describe different caches.*dtype: 'float32' vs 'float16'"):
        read_cache_index(str(cache))
