"""--help and config errors of the entry scripts come without importing MindSpore (seconds, not a framework load).

Each case runs in a fresh interpreter, so modules other tests imported do not hide an import.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import sys
import {module} as entry
try:
    entry.main({argv!r})
except SystemExit as stop:
    print("exit", stop.code)
except Exception as err:
    print("error", type(err).__name__, err)
print("imported:", sorted(m for m in ("mindspore", "torch") if m in sys.modules))
"""


@pytest.mark.parametrize("module, argv, outcome", [
    ("train", ["--help"], "exit 0"),
    ("train", ["--num_frames", "0"], "error ConfigError num_frames=0 must be >= 1"),
    ("train", ["--data_config.class_from", "title"], "error ConfigError data_config.class_from='title' is not one"),
    ("sample", ["--help"], "exit 0"),
    ("sample", ["--checkpoint", "x.ckpt", "--condition", "text"], "error ConfigError condition 'text' needs a LatteT2V checkpoint"),
    ("sample", ["-c", "configs/inference/t2v.yaml", "--prompt", "a cat"], "error ConfigError 'prompt' is a text-to-"),
    ("tools.embedding_cache", ["--help"], "exit 0"),
    ("tools.embedding_cache", ["--cache_folder", "c", "--num_frames", "4"], "error ConfigError unknown config key"),
    ("tools.train_vae", ["--help"], "exit 0"),
    ("tools.capture_frames", ["--frame_height", "0"], "error ConfigError frame_height=0 must be >= 1"),
])
def test_help_and_config_errors_do_not_import_mindspore(module, argv, outcome):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(module=module, argv=argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    assert "imported: []" in proc.stdout, proc.stdout


def test_data_config_choices_are_in_help():
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())
    assert "--data_config.class_from" in help_text and "Choices: ['folder', 'filename']" in help_text
    assert "Choices: ['video_file', 'frame_folder', 'synthetic', 'numpy', 'mindrecord']" in help_text


def test_scripts_run_from_any_folder_with_one_copy_of_the_library(tmp_path):
    """The editable install (README: Install) is how tools/x.py finds latte from any folder: no path edits, and no
    tools/latte link that made a second copy of every module (tools.latte.config.ConfigError)."""
    for script in ("tools/embedding_cache.py", "tools/latte_converter.py", "sample.py"):
        proc = subprocess.run([sys.executable, os.path.join(REPO, script), "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
    assert not os.path.lexists(os.path.join(REPO, "tools", "latte"))
