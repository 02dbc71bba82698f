"""Device, execution mode, precision, seeds and distributed setup, in one place."""
import dataclasses
import logging
import os
import random
import sys

import numpy as np

from latte.allocator import PRELOAD_VAR, find_jemalloc, log_allocator, preload_for

logger = logging.getLogger(__name__)

DEVICES = ("Ascend", "GPU", "CPU")
MODES = {0: "graph", 1: "pynative"}
JIT_LEVELS = ("O0", "O1", "O2")
DTYPES = ("fp32", "fp16", "bf16")

# oneDNN picks a very slow reference convolution on AVX-512 CPUs inside MindSpore 2.10; capping its ISA at
# AVX2 makes convs ~100x faster (matmul ~15% slower). It is read once, when the process starts using oneDNN.
ONEDNN_ISA_VAR = "ONEDNN_MAX_CPU_ISA"
ONEDNN_FAST_ISA = "AVX2"
_REEXEC_MARK = "LATTE_MS_REEXEC_FOR_CONVS"


@dataclasses.dataclass
class RunContext:
    device_target: str
    mode: int
    rank: int = 0
    group_size: int = 1

    @property
    def is_main(self):
        return self.rank == 0


# cheap signs that a device's driver is installed; without them MindSpore is not asked (it prints load errors)
_DRIVER_SIGNS = {"Ascend": ("/usr/local/Ascend", "/dev/davinci0"), "GPU": ("/proc/driver/nvidia", "/dev/nvidia0")}


def accelerator_available(device):
    import mindspore as ms

    if not any(os.path.exists(p) for p in _DRIVER_SIGNS.get(device, ())):
        return False
    try:
        return bool(ms.hal.is_available(device))
    except Exception:  # a backend plugin that is not installed raises instead of answering False
        return False


def resolve_device_target(requested=None):
    """The requested device, or the first of Ascend, GPU, CPU that this MindSpore can use."""
    if requested:
        if requested not in DEVICES:
            raise ValueError(f"device_target={requested!r} is not one of {DEVICES}")
        return requested
    for device in DEVICES[:-1]:
        if accelerator_available(device):
            return device
    return "CPU"


def dtype_name(name, device_target):
    """The compute dtype a config's dtype key means: as given, or (None) fp32 on CPU and fp16 elsewhere."""
    if name is None:
        return "fp32" if device_target == "CPU" else "fp16"
    return name


def resolve_dtype(name, device_target):
    """'fp32' | 'fp16' | 'bf16' (None: fp32 on CPU, fp16 elsewhere) -> mindspore dtype, with device checks."""
    import mindspore as ms

    name = dtype_name(name, device_target)
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not one of {DTYPES}")
    if name == "bf16" and device_target == "CPU":
        raise ValueError("dtype=bf16: MindSpore has no bf16 kernels on CPU; use dtype fp32 on CPU "
                         "(fp16 runs but is slower than fp32 there)")
    return {"fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}[name]


def set_seed(seed):
    import mindspore as ms

    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)


def setup_context(device_target=None, mode=0, jit_level="O1", seed=None, use_parallel=False,
                  max_device_memory=None):
    """Sets MindSpore's device, mode and jit level (and communication when use_parallel); logs the choice."""
    import mindspore as ms

    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use 0 (graph) or 1 (pynative)")
    if jit_level not in JIT_LEVELS:
        raise ValueError(f"jit_level={jit_level!r} is not one of {JIT_LEVELS}")
    device = resolve_device_target(device_target)
    if ms.get_context("device_target") != device:  # once kernels ran, MindSpore refuses even a same-device call
        ms.set_device(device)
    ms.set_context(mode=ms.GRAPH_MODE if mode == 0 else ms.PYNATIVE_MODE, jit_config={"jit_level": jit_level})
    if max_device_memory and device != "CPU":
        ms.set_context(max_device_memory=max_device_memory)
    rank, group_size = 0, 1
    if use_parallel:
        rank, group_size = init_data_parallel()
    if seed is not None:
        set_seed(seed)
    how = "requested" if device_target else "auto-detected"
    logger.info("device %s (%s), %s mode, jit_level %s%s", device, how, MODES[mode], jit_level,
                f", rank {rank}/{group_size}" if use_parallel else "")
    if device == "CPU" and os.environ.get(_REEXEC_MARK):
        logger.info("CPU convolutions: restarted with %s=%s so oneDNN uses fast kernels (set the variable "
                    "yourself to choose otherwise)", ONEDNN_ISA_VAR, ONEDNN_FAST_ISA)
    log_allocator()
    return RunContext(device, mode, rank, group_size)


def setup_context_from(cfg):
    """setup_context with every DeviceOptions key of a script config (device, mode, jit level, seed, device
    memory) and, for ContextOptions, data parallel (a config without use_parallel runs in one process)."""
    return setup_context(cfg.device_target, cfg.mode, cfg.jit_level, seed=cfg.seed,
                         use_parallel=getattr(cfg, "use_parallel", False), max_device_memory=cfg.max_device_memory)


def init_data_parallel():
    """Initializes collective communication and data-parallel gradient averaging; returns (rank, size).

    The process must come from a launcher (msrun, mpirun, an Ascend rank table: see latte.launch). A failure to
    form the cluster (a port in use, fewer processes than announced) ends in a RuntimeError that says what to
    check, after the launcher's timeout (msrun --cluster_time_out, MS_TOPO_TIMEOUT), never in a hang.
    """
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    from latte.launch import abort_cluster, prepare_cluster

    plan = prepare_cluster(ms.get_context("device_target"))
    try:
        init()
    except Exception as err:  # MindSpore raises RuntimeError with long logs; say what to check
        abort_cluster()
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"use_parallel=True: this process could not join the cluster ({plan}). {plan.hint()} "
                           f"MindSpore: {cause}") from err
    rank, size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=size)
    return rank, size


def _cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512" in f.read()
    except OSError:
        return False


def restart_with_fast_settings(convolutions=True):
    """Restarts the current script, once, with the process settings that make it fast on this machine:

    - ONEDNN_MAX_CPU_ISA=AVX2 where the CPU has AVX-512 and the script runs convolutions (see ONEDNN_ISA_VAR
      above), unless the variable is set already (by the user or a previous restart);
    - jemalloc preloaded where it is installed (latte.allocator: faster graph compiles, a lower first-step peak),
      unless LATTE_MS_ALLOCATOR=system or LD_PRELOAD already names an allocator.

    Call it first under `if __name__ == "__main__":`, before MindSpore is imported. It does nothing when there is
    nothing to change; the restarted process keeps its pid, arguments and environment otherwise.
    """
    changes = {}
    if convolutions and ONEDNN_ISA_VAR not in os.environ and _cpu_has_avx512():
        changes[ONEDNN_ISA_VAR] = ONEDNN_FAST_ISA
        changes[_REEXEC_MARK] = "1"
    try:
        preload = preload_for(os.environ, find_jemalloc())
    except ValueError as err:  # a bad LATTE_MS_ALLOCATOR: one line, before anything starts
        raise SystemExit(f"error: {err}") from None
    if preload:
        changes[PRELOAD_VAR] = preload
    if not changes:
        return
    os.environ.update(changes)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable] + sys.argv)


# progress bars redraw at most this often (seconds) when stderr is a file or pipe (CI logs, msrun logs)
PROGRESS_INTERVAL_NO_TTY = 30.0


def progress(iterable=None, **kwargs):
    """tqdm that redraws rarely when stderr is not a terminal, so logs stay readable."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", PROGRESS_INTERVAL_NO_TTY)
    return tqdm(iterable, **kwargs)


_OWN_HANDLERS = []


class _BarAwareHandler(logging.StreamHandler):
    """Writes each log line through tqdm.write, which lifts an active progress bar off the line first (a plain
    stream handler glues the message onto the end of the bar)."""

    def emit(self, record):
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 -- logging must never raise
            self.handleError(record)


def setup_logging(log_file=None, rank=0):
    """INFO logs to stderr (ranks > 0 prefixed) and optionally to a file; calling again replaces only the
    handlers installed here, so handlers of the embedding program (e.g. pytest's) stay."""
    fmt = "%(asctime)s %(levelname)s " + (f"[rank {rank}] " if rank else "") + "%(name)s: %(message)s"
    root = logging.getLogger()
    for handler in _OWN_HANDLERS:
        root.removeHandler(handler)
        handler.close()
    _OWN_HANDLERS.clear()
    _OWN_HANDLERS.append(_BarAwareHandler())
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        _OWN_HANDLERS.append(logging.FileHandler(log_file))
    for handler in _OWN_HANDLERS:
        handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
