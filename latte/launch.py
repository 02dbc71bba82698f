"""Launchers of data-parallel runs (`--use_parallel True`): what MindSpore's `init()` needs before it runs.

- msrun (CPU, GPU, Ascend; `scripts/msrun_train.sh`): starts a scheduler process and the workers, and sets
  MindSpore's dynamic-cluster variables (MS_ROLE, MS_WORKER_NUM, MS_SCHED_HOST, MS_SCHED_PORT, MS_NODE_ID,
  MS_TOPO_TIMEOUT) itself. It runs the training script in the scheduler too; its `init()` never returns.
- Ascend rank table (`scripts/run_distributed_sky_numpy_video.sh`): RANK_TABLE_FILE, RANK_ID, DEVICE_ID and
  RANK_SIZE per process; HCCL reads the table.
- Open MPI's mpirun: MindSpore 2.10 on CPU cannot initialise from Open MPI's variables ("Failed to initialize
  communication library on device side"), so `prepare_cluster` turns each mpirun rank into a dynamic-cluster
  worker (rank -> MS_NODE_ID, size -> MS_WORKER_NUM) and rank 0 also starts the scheduler process. This is
  done for every device: it is what msrun does, with mpirun starting the processes.
"""
import dataclasses
import errno
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

logger = logging.getLogger(__name__)

DEFAULT_SCHED_PORT = 8118  # msrun's default --master_port
DEFAULT_TOPO_TIMEOUT_S = 120  # mpirun starts every rank at once; MindSpore gives up joining after this
LOCALHOST = "127.0.0.1"
OMPI_RANK, OMPI_SIZE, OMPI_LOCAL_SIZE = "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"
OMPI_WORLD_PREFIX = "OMPI_COMM_WORLD_"
# Open MPI marks bound ranks; an explicit --bind-to (or the MCA variable) also sets the policy variable
OMPI_BOUND, OMPI_BINDING_POLICY = "OMPI_MCA_orte_bound_at_launch", "OMPI_MCA_hwloc_base_binding_policy"
RANK_TABLE_VARS = ("RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH")

# The scheduler process rank 0 starts under mpirun: MindSpore's init() with MS_ROLE=MS_SCHED serves the
# cluster until every worker has left, then ends the process.
SCHEDULER_CODE = "import sys; import mindspore as ms; ms.set_device(sys.argv[1]); " \
                 "from mindspore.communication import init; init()"

NO_LAUNCHER = (
    "use_parallel=True needs a launcher that starts one process per device and tells each its rank; this process "
    "was started alone. Use one of (see README, Distributed training):\n"
    "  msrun --worker_num=N --local_worker_num=N --master_port=8118 --log_dir=LOGS --join=True "
    "python train.py -c CONFIG --use_parallel True\n"
    "  bash scripts/msrun_train.sh --workers N -- -c CONFIG\n"
    "  mpirun -n N python train.py -c CONFIG --use_parallel True\n"
    "  bash scripts/run_distributed_sky_numpy_video.sh RANK_TABLE.json START_DEVICE N   (Ascend)\n"
    "or drop --use_parallel to train in this single process.")

HINTS = {
    "msrun": "Usual causes: fewer processes joined than MS_WORKER_NUM (msrun --worker_num is the total over all "
             "nodes and --local_worker_num the processes of this node: every node must run msrun with the same "
             "--worker_num, --master_addr and --master_port), or another program holds the scheduler port (choose "
             "another --master_port). msrun's --log_dir holds scheduler.log and worker_<k>.log.",
    "mpirun": "Rank 0 runs the scheduler. Usual causes: another program holds the scheduler port (pass "
              "-x MS_SCHED_PORT=<free port> to mpirun), or, over several nodes, MS_SCHED_HOST is not an address of "
              "rank 0's node that the others can reach.",
    "rank_table": "Check that RANK_TABLE_FILE lists this node's devices and RANK_SIZE of them, and that RANK_ID and "
                  "DEVICE_ID of each process match an entry of the table.",
}


class LaunchError(RuntimeError):
    """The process environment cannot start a data-parallel run; the message says how to start one."""


@dataclasses.dataclass
class ClusterPlan:
    """How this process joins the cluster, in words (for logs and error messages)."""
    launcher: str  # "msrun" (any dynamic cluster), "mpirun" or "rank_table"
    description: str

    def __str__(self):
        return self.description

    def hint(self):
        return HINTS[self.launcher]


def detect_launcher(environ=None):
    """'msrun' (MindSpore's dynamic-cluster variables are set), 'rank_table', 'mpirun' or None."""
    environ = os.environ if environ is None else environ
    if environ.get("MS_ROLE"):
        return "msrun"
    if any(environ.get(name) for name in RANK_TABLE_VARS):
        return "rank_table"
    if environ.get(OMPI_SIZE):
        return "mpirun"
    return None


class _Scheduler:
    """The scheduler process rank 0 starts under mpirun."""

    def __init__(self, device_target, host, port, environ):
        _check_port_free(host, port)
        self.log_path = os.path.join(tempfile.gettempdir(), f"latte-ms-scheduler-{port}.log")
        env = dict(environ, MS_ROLE="MS_SCHED")
        env.pop("MS_NODE_ID", None)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SCHEDULER_CODE, device_target], env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self):
        code = self.process.poll()
        if code is not None:
            raise LaunchError(f"the scheduler process ended (exit code {code}) before the cluster formed; its log "
                              f"{self.log_path} ends:\n{_tail(self.log_path)}")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()


_scheduler = None


def prepare_cluster(device_target, environ=None):
    """Checks (and under mpirun sets) the environment init() reads, logs how this process joins and, for a
    dynamic-cluster worker, waits until the scheduler listens. Returns the ClusterPlan; raises LaunchError."""
    global _scheduler
    environ = os.environ if environ is None else environ
    launcher = detect_launcher(environ)
    if launcher is None:
        raise LaunchError(NO_LAUNCHER)
    if launcher == "rank_table":
        table = environ.get(RANK_TABLE_VARS[0]) or environ.get(RANK_TABLE_VARS[1])
        plan = ClusterPlan(launcher, f"rank table {table}, RANK_ID {environ.get('RANK_ID', '?')}, DEVICE_ID "
                                     f"{environ.get('DEVICE_ID', '?')}, RANK_SIZE {environ.get('RANK_SIZE', '?')}")
        logger.info("joining the cluster: %s", plan)
        return plan
    if launcher == "mpirun":
        _scheduler = _map_open_mpi(device_target, environ)
    role = "scheduler" if environ["MS_ROLE"] == "MS_SCHED" else "worker"
    timeout = environ.get("MS_TOPO_TIMEOUT")
    plan = ClusterPlan(launcher, f"{launcher}: {role} (node id {environ.get('MS_NODE_ID', 'auto')}) of "
                                 f"{environ.get('MS_WORKER_NUM', '?')} workers, scheduler "
                                 f"{environ.get('MS_SCHED_HOST', '?')}:{environ.get('MS_SCHED_PORT', '?')}, "
                                 + (f"gives up after {timeout} s" if timeout else "MindSpore's default timeout")
                                 + (f", scheduler log {_scheduler.log_path}" if _scheduler else ""))
    logger.info("joining the cluster: %s", plan)
    if "MS_SCHED_HOST" not in environ or "MS_SCHED_PORT" not in environ:
        return plan  # MindSpore reports what is missing
    host, port = environ["MS_SCHED_HOST"], int(environ["MS_SCHED_PORT"])
    if role == "scheduler":  # msrun's scheduler: say so at once instead of letting the workers time out
        _check_port_free(host, port)
    else:
        try:
            _wait_for_scheduler(host, port, float(timeout or -1))
        except LaunchError as err:
            abort_cluster()
            raise LaunchError(f"{err} ({plan}). {plan.hint()}") from None
    return plan


def abort_cluster():
    """Call when init() failed: stops the scheduler this process started, if any."""
    if _scheduler is not None:
        _scheduler.stop()


def _map_open_mpi(device_target, environ):
    """Open MPI rank variables -> MindSpore dynamic-cluster variables; rank 0 starts the scheduler."""
    rank, size = int(environ[OMPI_RANK]), int(environ[OMPI_SIZE])
    single_node = int(environ.get(OMPI_LOCAL_SIZE, size)) == size
    host = environ.get("MS_SCHED_HOST") or (LOCALHOST if single_node else None)
    if host is None:
        raise LaunchError("mpirun over several nodes: every rank must know where rank 0 (which runs the scheduler) "
                          "is: mpirun -x MS_SCHED_HOST=<address of rank 0's node> [-x MS_SCHED_PORT=<port>] ...")
    port = int(environ.get("MS_SCHED_PORT", DEFAULT_SCHED_PORT))
    _undo_default_binding(environ)
    for key in [k for k in environ if k.startswith(OMPI_WORLD_PREFIX)]:
        del environ[key]  # else MindSpore takes the Open MPI path, which fails on CPU
    environ.update(MS_WORKER_NUM=str(size), MS_SCHED_HOST=host, MS_SCHED_PORT=str(port))
    environ.setdefault("MS_TOPO_TIMEOUT", str(DEFAULT_TOPO_TIMEOUT_S))
    scheduler = _Scheduler(device_target, host, port, environ) if rank == 0 else None
    environ.update(MS_ROLE="MS_WORKER", MS_NODE_ID=str(rank))
    return scheduler


def _wait_for_scheduler(host, port, timeout_s):
    """Returns once the scheduler accepts connections (timeout_s <= 0: no limit).

    MindSpore's own first attempts, made while the scheduler is still starting, fail and back off for seconds;
    connecting only once it listens measurably shortens joining on a busy machine.
    """
    start = time.monotonic()
    while True:
        if _scheduler is not None:
            _scheduler.check_alive()
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            pass
        if 0 < timeout_s < time.monotonic() - start:
            raise LaunchError(f"no scheduler answered at {host}:{port} within {timeout_s:g} s")
        time.sleep(0.2)


def _undo_default_binding(environ):
    """Gives a rank that Open MPI's default binding pinned to one CPU the CPUs of its launcher back.

    Open MPI binds each rank to one core by default when it starts 2 or fewer processes. Measured on a 2-core
    machine: a rank pinned so fails to join MindSpore's cluster (its connection threads miss MindSpore's 10 ms
    connect windows) and computes on one core. An explicit --bind-to is respected.
    """
    if environ.get(OMPI_BOUND) != "1" or OMPI_BINDING_POLICY in environ:
        if environ.get(OMPI_BINDING_POLICY, "none") != "none" and len(os.sched_getaffinity(0)) == 1:
            logger.warning("mpirun --bind-to %s pinned this rank to CPU %s: MindSpore may fail to join the "
                           "cluster so; --bind-to none avoids it", environ[OMPI_BINDING_POLICY],
                           sorted(os.sched_getaffinity(0)))
        return
    pinned = os.sched_getaffinity(0)
    if len(pinned) != 1:
        return
    try:
        allowed = os.sched_getaffinity(os.getppid())
        os.sched_setaffinity(0, allowed)
    except OSError as err:
        logger.warning("mpirun pinned this rank to CPU %s and it could not be undone (%s): pass --bind-to none",
                       sorted(pinned), err)
        return
    logger.info("mpirun's default binding pinned this rank to CPU %s; it runs on CPUs %s like msrun's workers "
                "(pass --bind-to to choose yourself)", sorted(pinned), sorted(allowed))


def _check_port_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise LaunchError(f"cannot start the cluster's scheduler at {host}:{port}: another program (or an "
                                  "earlier run) holds that port. Choose another one: msrun --master_port, "
                                  "scripts/msrun_train.sh --master_port, mpirun -x MS_SCHED_PORT=...") from None
            raise LaunchError(f"cannot start the cluster's scheduler at {host}:{port} on this machine: {err}. The "
                              "scheduler address (msrun --master_addr, mpirun -x MS_SCHED_HOST=...) must be an "
                              "address of the machine that runs it") from None


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(unreadable)"
