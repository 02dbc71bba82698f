"""Data-parallel training on CPU with two workers.

msrun trains 3 steps (batch 2 x 2 ranks) and mpirun resumes that run to step 5; both ranks must end with
bit-identical weights and EMA (digests in every rank's log), equal to those of one process with batch 4 (fp32
tolerance), with disjoint data shards. Gradient accumulation 4 on 2 ranks equals one process with the global
batch, with exactly one all-reduce per optimizer step (counted by a hook). The embedding cache under msrun equals
a one-process cache. Then the launchers' checks: no launcher, port in use, mpirun variable mapping, and the two
launch scripts (the Ascend one with a stand-in for python).
"""
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import mindspore as ms

import train
from latte.config import load_config
from latte.data import iterate_batches, write_synthetic_dataset
from latte.data.cache import read_cache_index
from latte.env import RunContext
from latte.launch import LaunchError, prepare_cluster
from latte.options import TrainConfig
from latte.training.run_state import weights_digest
from latte.training.data import create_training_dataset
from tests.cache_support import cache_args, load_cached, run_tool, write_tiny_vae
from tests.cache_support import restore_mindspore_mode  # noqa: F401  (autouse fixture)
from tests.test_train_step import batch, make_step, weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model_name", "Latte-T/2", "--image_size", "16", "--num_frames", "4", "--device_target", "CPU",
        "--vae_checkpoint", "", "--log_interval", "1", "--step_mode", "True", "--ckpt_save_interval", "3",
        "--data_config.train_data_type", "synthetic", "--data_config.num_parallel_workers", "1",
        "--data_config.sample_stride", "1"]
DIGEST = re.compile(r"weights digest at step (\d+), rank (\d+)/(\d+): raw (\w+), EMA (\w+)")
LAUNCH_TIMEOUT_S = 300
ADAM_NOISE_ATOL = 1e-4  # the learning rate: AdamW's largest step
FP32_ATOL = 1e-6  # measured 1.5e-8 between 2 ranks x batch 2 and 1 process x batch 4 after 3 steps


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd, log):
    """Runs a launcher from the repository root; returns its output, failing the test on a non-zero exit."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every process it started
        output, _ = proc.communicate()
        pytest.fail(f"{cmd[0]} did not finish in {LAUNCH_TIMEOUT_S} s; output ends:\n{output[-4000:]}")
    with open(log, "w") as f:
        f.write(output)
    assert proc.returncode == 0, f"{cmd[0]} exited with {proc.returncode}; output ends:\n{output[-4000:]}"
    return output


def rank_logs(out, size=2):
    names = ["train.log"] + [f"train_rank{k}.log" for k in range(1, size)]
    return [(out / name).read_text() for name in names]


def digests(log, step):
    """(raw, EMA) digests a rank logged for `step`."""
    found = [m for m in DIGEST.finditer(log) if int(m.group(1)) == step]
    assert len(found) == 1, f"expected one weights digest for step {step} in:\n{log[-3000:]}"
    return found[0].group(4), found[0].group(5)


def ckpt_arrays(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def metric_losses(out, column="loss"):
    with open(out / "metrics.csv") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def msrun_or_skip():
    if shutil.which("msrun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")) is None:
        pytest.skip("msrun not found (it comes with mindspore)")


def msrun(root, *command):
    """Runs `python *command` on 2 CPU workers under msrun (the `python` on PATH: ours, see launch)."""
    launch(["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
            f"--log_dir={root / 'msrun_logs'}", "--join=True", "--cluster_time_out=120", "python", *command],
           root / "msrun.out")


def assert_ranks_agree_and_match(out, step, single_out, adam_noise=()):
    """Both ranks logged the digests of rank 0's checkpoint; the weights equal one process's to fp32 precision.
    adam_noise: name endings of parameters whose exact gradient is 0 (attention key biases: softmax ignores a
    shift shared by all keys): AdamW turns their ~1e-7 rounding noise into steps of up to lr, so there they agree
    only to lr x steps."""
    logs = rank_logs(out)
    (raw0, ema0), (raw1, ema1) = digests(logs[0], step), digests(logs[1], step)
    assert (raw0, ema0) == (raw1, ema1), "the ranks hold different weights"
    for suffix, digest in (("", raw0), ("-ema", ema0)):
        name = f"latte-{step:07d}{suffix}.ckpt"
        parallel, single = ckpt_arrays(out / "ckpt" / name), ckpt_arrays(single_out / "ckpt" / name)
        assert weights_digest(parallel) == digest, f"{name} is not what the ranks logged"
        assert parallel.keys() == single.keys()
        for key in parallel:
            atol = ADAM_NOISE_ATOL * step if key.endswith(tuple(adam_noise)) else FP32_ATOL
            np.testing.assert_allclose(parallel[key], single[key], rtol=0, atol=atol, err_msg=f"{name}:{key}")
    return logs


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """One process, batch 4 (the global batch of 2 ranks x 2), 5 steps, checkpoints at 3 and 5."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert train.main(TINY + ["--train_batch_size", "4", "--max_steps", "5", "--output_path", str(out)]) == 5
    return out


@pytest.fixture(scope="module")
def msrun_run(tmp_path_factory):
    """msrun, 2 CPU workers with batch 2 each, 3 steps."""
    msrun_or_skip()
    root = tmp_path_factory.mktemp("msrun")
    out = root / "run"
    msrun(root, "train.py", *TINY, "--train_batch_size", "2", "--max_steps", "3", "--use_parallel", "True",
          "--output_path", out)
    return out


@pytest.mark.slow
def test_msrun_two_workers_agree_and_equal_one_process_with_the_global_batch(msrun_run, single_run):
    logs = assert_ranks_agree_and_match(msrun_run, 3, single_run)
    for rank, log in enumerate(logs):
        assert f"shard {rank}/2" in log and "= global batch 4" in log
    # only rank 0 writes checkpoints, metrics and the loss curve; every rank writes its log
    assert "saved" in logs[0] and "saved" not in logs[1]
    assert (msrun_run / "metrics.csv").read_text().count("\n") == 4  # header + 3 steps
    # the logged loss is the mean over both ranks: what one process with the global batch logs
    np.testing.assert_allclose(metric_losses(msrun_run), metric_losses(single_run)[:3], rtol=1e-5, atol=2e-6)
    assert (msrun_run / "loss_curve.png").stat().st_size > 0
    assert sorted(p.name for p in msrun_run.iterdir() if p.name.startswith("train")) == ["train.log",
                                                                                        "train_rank1.log"]


@pytest.mark.slow
def test_mpirun_resumes_the_msrun_run_on_both_ranks(msrun_run, single_run, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (Debian: apt-get install openmpi-bin); msrun is tested above")
    out = tmp_path / "run"
    shutil.copytree(msrun_run, out)
    root_flag = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    launch(["mpirun", *root_flag, "--oversubscribe", "-n", "2", "-x", f"MS_SCHED_PORT={free_port()}", sys.executable,
            "train.py", *TINY, "--train_batch_size", "2", "--max_steps", "5", "--resume", "--use_parallel", "True",
            "--output_path", out], tmp_path / "mpirun.out")
    logs = assert_ranks_agree_and_match(out, 5, single_run)
    for log in logs:
        assert "train_state-0000003.ckpt at optimizer step 3" in log  # "resumed from <path> at optimizer step 3"
    assert (out / "metrics.csv").read_text().count("\n") == 6  # header + 5 steps


@pytest.mark.slow
def test_accumulation_on_two_ranks_equals_one_process_with_the_global_batch(tmp_path_factory):
    """train.py: 2 ranks x batch 1 x accumulation 4 == 1 process x batch 8 (weights, EMA, loss, mse, vb)."""
    msrun_or_skip()
    single = tmp_path_factory.mktemp("single8") / "run"
    assert train.main(TINY + ["--train_batch_size", "8", "--max_steps", "2", "--output_path", str(single)]) == 2
    root = tmp_path_factory.mktemp("msrun_accum")
    out = root / "run"
    msrun(root, "train.py", *TINY, "--train_batch_size", "1", "--gradient_accumulation_steps", "4", "--max_steps",
          "2", "--use_parallel", "True", "--output_path", out)
    logs = assert_ranks_agree_and_match(out, 2, single)
    assert "= global batch 8" in logs[0]
    for column in ("loss", "mse", "vb"):  # the window mean over both ranks: what the one process logs
        np.testing.assert_allclose(metric_losses(out, column), metric_losses(single, column), rtol=1e-5, atol=2e-6,
                                   err_msg=column)


@pytest.mark.slow
def test_one_all_reduce_per_optimizer_step(tmp_path):
    """A hook counts the TrainStep's collectives on 2 ranks with accumulation 4: none inside a window, one at its
    end; the ranks agree bit for bit and equal one process stepping once per window with the global batch."""
    msrun_or_skip()
    msrun(tmp_path, "-m", "tests.allreduce_worker", tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for record in ranks:
        assert record["calls"] == [0, 0, 0, 1, 1, 1, 1, 2]
        assert record["boundaries"] == [False, False, False, True] * 2
        assert [a for a, b in zip(record["applied"], record["boundaries"]) if b] == [True, True]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["stats"] == ranks[1]["stats"]

    ms.set_context(mode=ms.PYNATIVE_MODE)
    loss_net, step = make_step(accum=1)
    zero = ms.Tensor(0.0, ms.float32)
    stats = [step(*batch(8, window), zero)[0].asnumpy() for window in range(2)]
    np.testing.assert_allclose(np.array(ranks[0]["stats"]), np.array(stats), rtol=1e-5, atol=1e-7)
    for got, want in zip(ranks[0]["weights"], weights(loss_net)):
        np.testing.assert_allclose(np.array(got, np.float32), want, rtol=0, atol=FP32_ATOL)


def test_shards_are_disjoint_and_together_make_the_one_process_batch():
    """Rank r's sample i of batch k is sample 2i + r of one process's batch k: same clip, timestep and noise."""
    def batches(rank, size, batch_size, count=3):
        cfg = load_config(TrainConfig, TINY + ["--train_batch_size", str(batch_size)])
        dataset, _ = create_training_dataset(cfg, RunContext("CPU", 0, rank, size), 0, 1000)
        stream = iterate_batches(dataset, output_numpy=True)
        return [next(stream) for _ in range(count)]

    single = batches(0, 1, 4)
    shards = [batches(rank, 2, 2) for rank in range(2)]
    for k, whole in enumerate(single):
        for rank, shard in enumerate(shards):
            for column, (part, full) in enumerate(zip(shard[k], whole)):
                np.testing.assert_array_equal(part, full[rank::2], err_msg=f"batch {k}, rank {rank}, column {column}")
    seen = [{shard[k][0][i].tobytes() for k in range(3) for i in range(2)} for shard in shards]
    assert len(seen[0]) == len(seen[1]) == 6 and not seen[0] & seen[1]


@pytest.mark.slow
def test_embedding_cache_under_msrun_equals_one_process(tmp_path):
    """tools/embedding_cache.py --use_parallel via scripts/msrun_train.sh: ranks split the videos, one cache."""
    vae = write_tiny_vae(tmp_path / "tiny_vae.ckpt")
    videos = tmp_path / "frames"
    write_synthetic_dataset(str(videos), n_videos=5, n_frames=9, size=32, layout="frame_folder")
    assert run_tool(*cache_args(videos, tmp_path / "single", vae, "frame_folder")) == 0
    launch(["bash", "scripts/msrun_train.sh", "--workers", 2, "--master_port", free_port(), "--log_dir",
            tmp_path / "msrun_logs", "--timeout", 120, "--script", "tools/embedding_cache.py", "--",
            *cache_args(videos, tmp_path / "parallel", vae, "frame_folder")], tmp_path / "msrun.out")
    assert {p.name for p in (tmp_path / "parallel").glob("manifest.rank*.jsonl")} == {"manifest.rank0.jsonl",
                                                                                     "manifest.rank1.jsonl"}
    single, parallel = (read_cache_index(str(tmp_path / name)).videos for name in ("single", "parallel"))
    assert [(v["id"], v["name"]) for v in parallel] == [(v["id"], v["name"]) for v in single]
    for a, b in zip(parallel, single):
        np.testing.assert_array_equal(load_cached(tmp_path / "parallel", a), load_cached(tmp_path / "single", b))


# ---- launcher checks (no training) ----------------------------------------------------------------------------

def ompi_env(rank, size=2, local_size=None, **extra):
    return dict({"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(size),
                 "OMPI_COMM_WORLD_LOCAL_RANK": str(rank), "OMPI_COMM_WORLD_LOCAL_SIZE": str(local_size or size)},
                **extra)


def test_use_parallel_without_a_launcher_names_the_commands():
    with pytest.raises(LaunchError, match="started alone") as err:
        prepare_cluster("CPU", environ={})
    assert "msrun --worker_num" in str(err.value) and "mpirun -n N" in str(err.value)


def test_mpirun_ranks_become_dynamic_cluster_workers():
    port = free_port()  # no scheduler there: rank 1 gives up after MS_TOPO_TIMEOUT
    environ = ompi_env(1, MS_SCHED_PORT=str(port), MS_TOPO_TIMEOUT="1")
    with pytest.raises(LaunchError, match=f"no scheduler answered at 127.0.0.1:{port} within 1 s") as err:
        prepare_cluster("CPU", environ=environ)
    assert f"worker (node id 1) of 2 workers, scheduler 127.0.0.1:{port}" in str(err.value)
    assert {k: environ[k] for k in ("MS_ROLE", "MS_NODE_ID", "MS_WORKER_NUM", "MS_SCHED_HOST", "MS_SCHED_PORT")} == {
        "MS_ROLE": "MS_WORKER", "MS_NODE_ID": "1", "MS_WORKER_NUM": "2", "MS_SCHED_HOST": "127.0.0.1",
        "MS_SCHED_PORT": str(port)}
    assert not any(k.startswith("OMPI_COMM_WORLD_") for k in environ)  # else MindSpore takes its MPI path
    with pytest.raises(LaunchError, match="MS_SCHED_HOST"):  # several nodes: where does rank 0 run?
        prepare_cluster("CPU", environ=ompi_env(1, size=4, local_size=2))


def test_scheduler_port_in_use_is_reported_at_once():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for environ in (ompi_env(0, MS_SCHED_PORT=str(port)),  # mpirun rank 0 starts the scheduler
                        {"MS_ROLE": "MS_SCHED", "MS_WORKER_NUM": "2", "MS_SCHED_HOST": "127.0.0.1",
                         "MS_SCHED_PORT": str(port)}):  # msrun's scheduler process
            with pytest.raises(LaunchError, match=f"127.0.0.1:{port}: another program"):
                prepare_cluster("CPU", environ=environ)
        result = run_script("msrun_train.sh", "--workers", "2", "--master_port", port, "--", "--device_target", "CPU")
    assert result.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in result.stderr


def run_script(name, *args, env=None, timeout=60):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               **(env or {}))
    return subprocess.run(["bash", os.path.join(REPO, "scripts", name), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_msrun_script_refuses_inconsistent_options():
    for args, needle in ((["--nodes", "2"], "give --master_addr"), (["--node_rank", "2", "--nodes", "2"], "node_rank"),
                         (["--workers", "x"], "--workers x"), (["--", "--use_parallel", "True"], "leave out"),
                         (["--bogus"], "unknown option")):
        result = run_script("msrun_train.sh", *args)
        assert result.returncode == 2 and needle in result.stderr, (args, result.stderr)


FAKE_PYTHON = """#!/usr/bin/env bash
echo "RANK_ID=$RANK_ID DEVICE_ID=$DEVICE_ID RANK_SIZE=$RANK_SIZE RANK_TABLE_FILE=$RANK_TABLE_FILE"
echo "ARGS $*"
[[ "$RANK_ID" == "${FAIL_RANK:-none}" ]] && { echo "rank $RANK_ID breaks"; exit 3; }
[[ -n "${FAIL_RANK:-}" ]] && exec sleep 60
exit 0
"""


@pytest.fixture
def rank_table_setup(tmp_path):
    table = tmp_path / "hccl_2p_45.json"
    table.write_text('{"version": "1.0", "server_count": "1", "status": "completed", "server_list": [{"server_id": '
                     '"10.0.0.1", "host_nic_ip": "reserve", "device": [{"device_id": "4", "device_ip": "192.1.0.4", '
                     '"rank_id": "0"}, {"device_id": "5", "device_ip": "192.1.0.5", "rank_id": "1"}]}]}')
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {"PYTHON": str(fake), "CONFIG": "configs/training/sky_video.yaml", "OUTPUT": str(tmp_path / "out")}
    return table, env, tmp_path / "out" / "rank_logs"


@pytest.mark.slow
def test_rank_table_script_gives_each_rank_its_device_and_log(rank_table_setup):
    table, env, logs = rank_table_setup
    result = run_script("run_distributed_sky_numpy_video.sh", table, 4, 2, "--max_steps", 7, env=env)
    assert result.returncode == 0, result.stderr
    for rank, device in ((0, 4), (1, 5)):
        log = (logs / f"rank_{rank}.log").read_text()
        assert f"RANK_ID={rank} DEVICE_ID={device} RANK_SIZE=2 RANK_TABLE_FILE={table}" in log
        assert "-c configs/training/sky_video.yaml" in log and "--use_parallel True --max_steps 7" in log

    result = run_script("run_distributed_sky_numpy_video.sh", table, 0, 2, env=env)  # devices 0, 1 not in the table
    assert result.returncode == 2 and "lists devices [4, 5]" in result.stderr


@pytest.mark.slow
def test_rank_table_script_stops_every_rank_when_one_fails(rank_table_setup):
    table, env, logs = rank_table_setup
    start = time.monotonic()
    result = run_script("run_distributed_sky_numpy_video.sh", table, 4, 2, env=dict(env, FAIL_RANK="1"))
    assert result.returncode == 3 and "rank 1 failed (exit code 3)" in result.stderr
    assert "rank 1 breaks" in result.stderr  # the tail of its log
    assert time.monotonic() - start < 30  # rank 0 (sleeping 60 s) was stopped


T2V_TINY = ["--model_name", "Latte-1-T", "--condition", "text", "--text_encoder", "demo", "--tokenizer", "demo",
            "--max_text_length", "6", "--caption_dropout_prob", "0.3", "--image_size", "16", "--num_frames", "4",
            "--device_target", "CPU", "--vae_checkpoint", "", "--log_interval", "1", "--step_mode", "True",
            "--ckpt_save_interval", "2", "--data_config.train_data_type", "synthetic",
            "--data_config.synthetic_captions", "True", "--data_config.num_parallel_workers", "1",
            "--data_config.sample_stride", "1"]


@pytest.mark.slow
def test_text_to_video_on_two_msrun_workers_equals_one_process_with_the_global_batch(tmp_path):
    """LatteT2V with T5 in the step and caption dropout: 2 ranks x batch 2 == 1 process x batch 4, 2 steps."""
    msrun_or_skip()
    single = tmp_path / "single"
    assert train.main(T2V_TINY + ["--train_batch_size", "4", "--max_steps", "2", "--output_path", str(single)]) == 2
    out = tmp_path / "run"
    msrun(tmp_path, "train.py", *T2V_TINY, "--train_batch_size", "2", "--max_steps", "2", "--use_parallel", "True",
          "--output_path", out)
    logs = assert_ranks_agree_and_match(out, 2, single, adam_noise=("to_k.bias",))
    assert all("condition text" in log for log in logs)
    np.testing.assert_allclose(metric_losses(out), metric_losses(single), rtol=1e-5, atol=2e-6)
