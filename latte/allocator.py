"""The process's memory allocator: jemalloc in place of glibc's malloc, and free pages handed back after a compile.

MindSpore's graph compiler builds and drops hundreds of thousands of small C++ objects. Under jemalloc the
Latte-S/2 train step compiles 20-30% faster than under glibc's malloc (the README's Performance section has the
figures), and `release_free_memory` after the compile hands the pages it freed back to the system: with glibc
most of them stay in the process, because its freed chunks lie between live ones (malloc_trim returns ~60 of
~280 MiB).

An allocator is chosen when a program starts, so the entry scripts restart themselves with jemalloc preloaded
(latte.env.restart_with_fast_settings) when it is installed (Debian/Ubuntu: `apt-get install libjemalloc2`).
LATTE_MS_ALLOCATOR=system keeps glibc's malloc; an LD_PRELOAD that already names an allocator is left alone.
Only compile_and_release imports MindSpore (when called).
"""
import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

ALLOCATOR_VAR = "LATTE_MS_ALLOCATOR"
ALLOCATORS = ("jemalloc", "system")  # the first is the default
PRELOAD_VAR = "LD_PRELOAD"
_KNOWN_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")  # a preload of one of these (the user's, ours) wins
_JEMALLOC_PURGE_ALL = b"arena.4096.purge"  # 4096 = MALLCTL_ARENAS_ALL: every arena's unused dirty pages


def requested_allocator(environ=None):
    """The allocator LATTE_MS_ALLOCATOR names (default jemalloc); ValueError for any other value."""
    value = (os.environ if environ is None else environ).get(ALLOCATOR_VAR, ALLOCATORS[0]).strip().lower()
    if value not in ALLOCATORS:
        raise ValueError(f"{ALLOCATOR_VAR}={value!r} is not one of {ALLOCATORS}: unset it for jemalloc, or set "
                         f"{ALLOCATOR_VAR}=system to keep glibc's malloc")
    return value


def find_jemalloc():
    """The jemalloc library the dynamic loader can preload (its soname), or None (not installed, not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.util.find_library("jemalloc")


def preload_for(environ, library):
    """The LD_PRELOAD value that adds `library` to the process, or None when nothing should change: jemalloc not
    requested or not found, or LD_PRELOAD already naming an allocator (the user's, or ours after a restart)."""
    if library is None or requested_allocator(environ) != "jemalloc":
        return None
    current = environ.get(PRELOAD_VAR, "")
    if any(name in current for name in _KNOWN_ALLOCATORS):
        return None
    return f"{current}:{library}" if current else library


def allocator_in_use():
    """"jemalloc", "tcmalloc" or "mimalloc" when this process has that library mapped, else "system"."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "system"
    return next((name for name in _KNOWN_ALLOCATORS if f"lib{name}" in maps), "system")


def log_allocator():
    """One log line: which allocator this process runs on, and how to change it."""
    used = allocator_in_use()
    if used == "jemalloc":
        logger.info("memory allocator: jemalloc (%s=system keeps glibc's malloc)", ALLOCATOR_VAR)
    elif used == "system" and sys.platform.startswith("linux") and find_jemalloc() is None:
        logger.info("memory allocator: glibc's malloc; with jemalloc installed (apt-get install libjemalloc2) "
                    "graphs compile 20-30%% faster and the first run peaks lower")
    else:  # chosen (LATTE_MS_ALLOCATOR=system, the user's preload), or this process was not restarted
        logger.info("memory allocator: %s", used)


def release_free_memory():
    """Hands the allocator's unused pages back to the system: jemalloc purges every arena, glibc trims its heap.
    Returns how ("jemalloc purge", "malloc_trim") or None where neither is available."""
    process = ctypes.CDLL(None)  # the symbols of everything loaded, a preloaded jemalloc first
    mallctl = getattr(process, "mallctl", None)
    if mallctl is not None:
        mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        if mallctl(_JEMALLOC_PURGE_ALL, None, None, None, 0) == 0:
            return "jemalloc purge"
    trim = getattr(process, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim(0)
        return "malloc_trim"
    return None


def compile_and_release(cell, *inputs):
    """Compiles `cell` for these inputs (graph mode), then hands the compiler's freed pages back before the first
    step allocates: under jemalloc the first step's peak is then ~0.12 GiB lower (Latte-S/2, 8 frames).
    PyNative mode: nothing to do."""
    import mindspore as ms

    if ms.get_context("mode") != ms.GRAPH_MODE:
        return
    cell.compile(*inputs)
    release_free_memory()
