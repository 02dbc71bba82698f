"""Reusing the compiled graphs of an earlier run (MindSpore's compile cache), only where they are this run's graphs.

Graph mode compiles every network before its first call: ~35 s for a Latte-S/2 train step on a 2-core CPU, ~73 s
for a Latte-1 forward. MindSpore can save the compiled graphs and load them in a later process
(MS_COMPILER_CACHE_ENABLE / MS_COMPILER_CACHE_PATH), which a resumed training or a repeated sample.py then
starts from in a few seconds. Measured facts about that cache (MindSpore 2.10, CPU) that this module is built on:

- The graphs of a process are numbered in the order they are compiled (compile_cache_<n>.mindir) and the n-th
  compile of a later process loads file n: nothing checks that it is the same network. A graph of another
  network fails at run time in a memcpy kernel, or worse, runs.
- MindSpore's own dependency hash covers the entry script's imports outside sys.path only: the installed
  `latte` package is not in it, so an edit to latte/ does not invalidate the cache by itself.
- The folder is read at the first cached compile of a process and kept: a second folder later in the same
  process is ignored, and the numbering continues. Compiles while the cache is off are not numbered.
- A torn file (a run killed while writing it) logs "Load MindIR file failed" and is compiled and written again.
- MindSpore hashes the entry script (sys.argv[0]) and fails with FileNotFoundError when it is not a file
  (`python -c`, a pytest-xdist worker): the cache stays off there.

So the folder is named by a digest of everything that decides the graphs and their order: the entry script,
the whole config (less the keys below that only name outputs or the resume point), the latte-ms sources
(.py and the native kernels' .cc), MindSpore's version, the device and the rank. The cache is turned on at most
once per process, before the script compiles anything, and off when the script ends (`graph_cache`).
"""
import contextlib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_FOLDER = ".graph_cache"  # under the run's output_path
ENABLE_VAR, PATH_VAR = "MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH"
# config keys that name where outputs go or where a run resumes: they never change a graph
NON_GRAPH_KEYS = ("output_path", "resume", "graph_cache")
SOURCE_SUFFIXES = (".py", ".cc")
_used_in_process = []  # a folder once the cache was on in this process (MindSpore keeps it and its numbering)


def sources_digest(package_dir=None):
    """sha256 over the latte package's .py and .cc files (relative names and contents), in name order."""
    root = Path(package_dir or Path(__file__).resolve().parent)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def graph_key(script, settings, device_target, rank=0, group_size=1):
    """Hex digest naming the graphs a script compiles with these settings (a dict of the config's keys)."""
    import mindspore as ms

    kept = {k: v for k, v in sorted(settings.items()) if k not in NON_GRAPH_KEYS}
    record = {"script": script, "settings": kept, "mindspore": ms.__version__, "latte": sources_digest(),
              "device": device_target, "rank": rank, "group_size": group_size}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def cache_folder(output_path, key):
    return os.path.join(output_path, CACHE_FOLDER, key[:20])


@contextlib.contextmanager
def graph_cache(enabled, output_path, script, settings, ctx):
    """Within the block, graphs are saved to / loaded from <output_path>/.graph_cache/<key>. Off (with a log line
    saying why) in PyNative mode or when this process already used the cache (a second run in one process)."""
    if not enabled or ctx.mode != 0:
        yield None
        return
    if ctx.group_size > 1:  # an mpirun-launched cluster segfaulted at exit with it (exit 139); msrun did not
        logger.info("graph cache: off in data-parallel runs")
        yield None
        return
    if not os.path.isfile(sys.argv[0]):
        logger.info("graph cache: off (MindSpore hashes the entry script, and this process has none: %r)",
                    sys.argv[0])
        yield None
        return
    if _used_in_process:
        logger.info("graph cache: off (this process already cached graphs in %s; MindSpore keeps one folder per "
                    "process)", _used_in_process[0])
        yield None
        return
    folder = cache_folder(output_path, graph_key(script, settings, ctx.device_target, ctx.rank, ctx.group_size))
    reused = os.path.isdir(folder)  # MindSpore creates it at the first compile
    _used_in_process.append(folder)
    previous = {var: os.environ.get(var) for var in (ENABLE_VAR, PATH_VAR)}
    os.environ[ENABLE_VAR], os.environ[PATH_VAR] = "1", folder
    logger.info("graph cache: %s %s (graph_cache: false turns it off)",
                "reusing the graphs compiled by an earlier run with these settings in" if reused
                else "compiling into", folder)
    try:
        yield folder
    finally:
        for var, value in previous.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
