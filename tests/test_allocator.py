"""The allocator switch: jemalloc preloaded by the entry scripts' restart, free pages released after a compile."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from latte.allocator import (ALLOCATOR_VAR, PRELOAD_VAR, allocator_in_use, find_jemalloc, preload_for,
                             release_free_memory, requested_allocator)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JEMALLOC = find_jemalloc()
needs_jemalloc = pytest.mark.skipif(JEMALLOC is None, reason="jemalloc is not installed (apt-get install libjemalloc2)")


def test_requested_allocator_defaults_to_jemalloc_and_refuses_unknown_names():
    assert requested_allocator({}) == "jemalloc"
    assert requested_allocator({ALLOCATOR_VAR: " System "}) == "system"
    with pytest.raises(ValueError, match=r"LATTE_MS_ALLOCATOR='tcmaloc' is not one of .*LATTE_MS_ALLOCATOR=system"):
        requested_allocator({ALLOCATOR_VAR: "tcmaloc"})


def test_preload_adds_jemalloc_once_and_leaves_a_chosen_allocator_alone():
    lib = "libjemalloc.so.2"
    assert preload_for({}, lib) == lib
    assert preload_for({PRELOAD_VAR: "/opt/libfoo.so"}, lib) == f"/opt/libfoo.so:{lib}"  # kept, jemalloc added
    assert preload_for({PRELOAD_VAR: lib}, lib) is None  # after the restart: nothing more to do
    assert preload_for({PRELOAD_VAR: "/usr/lib/libtcmalloc_minimal.so.4"}, lib) is None  # the user's choice
    assert preload_for({ALLOCATOR_VAR: "system"}, lib) is None
    assert preload_for({}, None) is None  # not installed: glibc's malloc, no restart


SCRIPT = textwrap.dedent("""
    import os, sys
    print("start", os.getpid(), flush=True)
    from latte.env import restart_with_fast_settings
    restart_with_fast_settings(convolutions=False)
    from latte.allocator import allocator_in_use
    print("running", os.getpid(), allocator_in_use(), os.environ.get("LD_PRELOAD", ""), flush=True)
""")


def _run_script(tmp_path, **env):
    script = tmp_path / "restart.py"
    script.write_text(SCRIPT)
    environ = {k: v for k, v in os.environ.items() if k not in (PRELOAD_VAR, ALLOCATOR_VAR)}
    environ.update(env, PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, str(script)], env=environ, capture_output=True, text=True, timeout=120)


@needs_jemalloc
def test_restart_preloads_jemalloc_in_the_same_process(tmp_path):
    done = _run_script(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    # the script ran twice (before and after the restart), as one process: exec keeps the pid
    assert [line[0] for line in lines] == ["start", "start", "running"]
    assert lines[0][1] == lines[1][1] == lines[2][1]
    assert lines[2][2] == "jemalloc" and lines[2][3] == JEMALLOC


def test_restart_keeps_glibc_when_asked_and_refuses_a_bad_name_in_one_line(tmp_path):
    done = _run_script(tmp_path, LATTE_MS_ALLOCATOR="system")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["start", "running"]  # no restart
    assert done.stdout.splitlines()[-1].split()[2] == "system"

    bad = _run_script(tmp_path, LATTE_MS_ALLOCATOR="tcmaloc")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: LATTE_MS_ALLOCATOR='tcmaloc' is not one of ('jemalloc', 'system'): unset it for jemalloc, or set "
        "LATTE_MS_ALLOCATOR=system to keep glibc's malloc"]


RELEASE = textwrap.dedent("""
    import ctypes
    from latte.allocator import allocator_in_use, release_free_memory
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    blocks = [libc.malloc(1024) for _ in range(200_000)]  # 200 MiB of small blocks, as a compiler leaves them
    for i, block in enumerate(blocks):
        ctypes.memset(block, 1, 1024)
    for i, block in enumerate(blocks):
        if i % 64:
            libc.free(block)  # one block in 64 stays alive: the freed ones lie between live ones
    before = rss()
    how = release_free_memory()
    print(allocator_in_use(), how, round(before), round(rss()), sep="|")
""")


@pytest.mark.parametrize("allocator", ["system", pytest.param("jemalloc", marks=needs_jemalloc)])
def test_release_hands_freed_pages_back(tmp_path, allocator):
    script = tmp_path / "release.py"
    script.write_text(RELEASE)
    environ = {k: v for k, v in os.environ.items() if k != PRELOAD_VAR}
    environ["PYTHONPATH"] = REPO_ROOT
    if allocator == "jemalloc":
        environ[PRELOAD_VAR] = JEMALLOC
    done = subprocess.run([sys.executable, str(script)], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    used, how, before, after = done.stdout.strip().split("|")
    assert used == allocator
    assert how == ("malloc_trim" if allocator == "system" else "jemalloc purge")
    assert int(before) - int(after) > 120, done.stdout  # of the ~197 MiB freed


def test_release_in_this_process_names_the_allocator_it_used():
    assert release_free_memory() == ("jemalloc purge" if allocator_in_use() == "jemalloc" else "malloc_trim")


def test_compile_and_release_compiles_once_for_the_first_call(monkeypatch):
    import mindspore as ms
    from mindspore import nn, ops
    from mindspore.nn import cell as cell_module

    from latte.allocator import compile_and_release
    from latte.env import setup_context

    setup_context("CPU", mode=0, seed=0)

    class Net(nn.Cell):
        def construct(self, x):
            return ops.relu(x) * 2.0

    compiled = []
    executor = cell_module._cell_graph_executor
    original = executor.compile

    def counting(*args, **kwargs):
        result = original(*args, **kwargs)
        compiled.append(result[1])  # True when a graph was compiled, False when it existed
        return result

    monkeypatch.setattr(executor, "compile", counting)
    net, x = Net(), ms.Tensor(np.array([-1.0, 2.0], np.float32))
    compile_and_release(net, x)
    out = net(x).asnumpy()
    assert compiled == [True, False]  # the call found the graph compile_and_release built
    np.testing.assert_array_equal(out, [0.0, 4.0])
