"""Entry scripts end a user's mistake with one `error:` line and exit code 2 (a traceback only with --debug), and
the messages name the fix."""
import os
import subprocess
import sys

import pytest

from latte.checkpoint_io import CheckpointError
from latte.cli import describe, is_user_error, run_cli
from latte.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("command, expected", [
    (["train.py"], "train.py needs a config: python train.py -c configs/training/demo.yaml"),
    (["train.py", "--num_frame", "3"], "did you mean 'num_frames'"),
    (["sample.py", "--checkpoint", "missing.ckpt"], "Latte checkpoint missing.ckpt not found: convert the released "
                                                     "weights to it with 'python tools/latte_converter.py"),
    (["train.py", "-c", "configs/training/sky_video.yaml", "--device_target", "CPU",
      "--vae_checkpoint", "missing-vae.ckpt", "--data_config.train_data_type", "synthetic"],
     "VAE checkpoint missing-vae.ckpt not found: convert the released weights to it with 'python "
     "tools/vae_converter.py"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, command, expected):
    proc = _run(*command, "--output_path", tmp_path / "out") if command != ["train.py"] else _run(*command)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "out").exists() or command[0] == "train.py"  # sample.py: no empty output folder


def test_debug_shows_the_traceback():
    proc = _run("train.py", "--num_frame", "3", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_run_cli_sorts_user_errors_from_bugs(capsys):
    def fails(err):
        def main(argv):
            raise err
        return main

    assert run_cli(fails(ConfigError("bad key x")), []) == 2
    assert capsys.readouterr().err == "error: bad key x\n"
    assert run_cli(fails(OSError(28, "No space left on device", "/full/disk/file")), []) == 2
    assert capsys.readouterr().err == "error: No space left on device: /full/disk/file\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_cli(fails(KeyError("x")), [])
    with pytest.raises(ConfigError):
        run_cli(fails(ConfigError("y")), ["--debug"])
    assert run_cli(lambda argv: 3, []) == 3 and run_cli(lambda argv: 7, [], exit_code_from_main=False) == 0
    assert run_cli(lambda argv: argv, ["--debug", "-c", "x"]) == 0  # --debug is not passed on
    assert is_user_error(PermissionError(13, "Permission denied", "/ro")) and not is_user_error(ValueError("v"))
    assert describe(ConfigError("two\n  lines")) == "two lines"


def test_latte_and_vae_checkpoints_swapped_say_so(tmp_path):
    import numpy as np

    from latte.checkpoint_io import save_ms_checkpoint
    from latte.models.loader import load_latte
    from latte.models.vae import load_vae

    latte_ckpt, vae_ckpt = str(tmp_path / "latte.ckpt"), str(tmp_path / "vae.ckpt")
    save_ms_checkpoint({"w": np.zeros(2, np.float32)}, latte_ckpt, {"kind": "latte", "config": {"depth": 2}})
    save_ms_checkpoint({"w": np.zeros(2, np.float32)}, vae_ckpt, {"config": {"kind": "kl"}})
    with pytest.raises(CheckpointError, match="holds a Latte transformer .latte., not a VAE"):
        load_vae(latte_ckpt)
    with pytest.raises(CheckpointError, match="holds a VAE .kl., not a Latte transformer"):
        load_latte(vae_ckpt)


def test_mindone_checkpoint_names_load(tmp_path):
    """mindone's trained Latte .ckpt: `network.` prefix and nn.Embedding's label table name."""
    import numpy as np

    from latte.checkpoint_io import read_ms_checkpoint, save_ms_checkpoint
    from latte.models.factory import create_latte
    from latte.models.loader import load_latte

    net = create_latte("Latte-T/2", input_size=4, num_frames=2, condition="class", num_classes=3)
    rng = np.random.default_rng(0)
    ours = {p.name: rng.standard_normal(p.shape).astype(np.float32) for p in net.get_parameters()}
    theirs = {("network." + k).replace("y_embedder.embedding_table", "y_embedder.embedding_table.embedding_table"): v
              for k, v in ours.items()}
    path = str(tmp_path / "mindone.ckpt")
    save_ms_checkpoint(theirs, path)  # no record, as mindone writes them: the keywords describe the model
    loaded = load_latte(path, model_name="Latte-T/2", input_size=4, num_frames=2, condition="class",
                        num_classes=3)
    got = {p.name: p.asnumpy() for p in loaded.get_parameters()}
    assert got.keys() == ours.keys()
    for key in ours:
        np.testing.assert_array_equal(got[key], ours[key], err_msg=key)
    assert "network.y_embedder.embedding_table.embedding_table" in read_ms_checkpoint(path)[0]


def test_help_keeps_the_usage_examples_as_written(capsys):
    import train

    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "\n    python train.py -c configs/training/sky_video.yaml  " in out  # one example per line
