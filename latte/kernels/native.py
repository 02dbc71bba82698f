"""The native CPU kernels (cpu_kernels.cc): built once per machine with the system C++ compiler, then cached.

MindSpore runs a C++ function as an operator through `ops.Custom(func_type="aot")` from a shared library. The
library is compiled for the CPU it runs on (-march=native), so it is built on first use, not shipped: into
`$LATTE_KERNEL_CACHE` or `~/.cache/latte-ms/kernels`, named by a hash of the source, the flags, the compiler
and the CPU, and renamed into place atomically (ranks that build at the same moment do not see half a file).
Without a compiler the models fall back to MindSpore's own kernels and say so once (see `kernel_backend`).
`$LATTE_KERNEL_THREADS` sets the threads of every kernel (default: one per transformer kernel, every core for the
VAE's GroupNorm; cpu_kernels.cc says why); results do not depend on it.
"""
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
CXX_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-shared",
             "-fPIC", "-pthread")
CACHE_VAR = "LATTE_KERNEL_CACHE"
DISABLE_VAR = "LATTE_NATIVE_KERNELS"  # "0": never build or use the native kernels
THREADS_VAR = "LATTE_KERNEL_THREADS"  # threads of every native kernel (unset: 1, the VAE's GroupNorm all cores)
BUILD_TIMEOUT_S = 300


def cache_dir():
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latte-ms" / "kernels"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _library_key(compiler):
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CXX_FLAGS).encode(), version.encode(), _cpu_model().encode(),
                 platform.machine().encode()):
        digest.update(part)
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def native_library():
    """(path of the built library, None) or (None, why there is none). Builds on the first call per machine."""
    if os.environ.get(DISABLE_VAR, "1") == "0":
        return None, f"{DISABLE_VAR}=0"
    if platform.system() != "Linux":
        return None, f"native kernels are built for Linux only, this is {platform.system()}"
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        return None, ("no C++ compiler (g++, or $CXX) on PATH; install one (e.g. apt-get install g++) for "
                      "faster CPU runs")
    try:
        target = cache_dir() / f"latte_kernels-{_library_key(compiler)}.so"
        if target.exists():
            return str(target), None
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            build = subprocess.run([compiler, *CXX_FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                                   timeout=BUILD_TIMEOUT_S, check=False)
            if build.returncode != 0:
                first = (build.stderr.strip().splitlines() or ["(no message)"])[0]
                return None, f"building {SOURCE.name} with {compiler} failed: {first}"
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        logger.info("built the native CPU kernels: %s", target)
        return str(target), None
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not build the native CPU kernels in {cache_dir()}: {err}"


def kernel_threads_setting():
    """The thread count $LATTE_KERNEL_THREADS asks for, or None when it is unset; a bad value is a ValueError."""
    text = os.environ.get(THREADS_VAR, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{THREADS_VAR}={text!r}: set a whole number of threads >= 1 for every native CPU kernel, "
                         f"or unset it (1 per transformer kernel, every core for the VAE's GroupNorm)")
    return int(text)


@functools.lru_cache(maxsize=None)
def library_threads(library):
    """(threads of a transformer kernel, threads of the VAE's GroupNorm) as the built `library` runs them; the
    library reads $LATTE_KERNEL_THREADS once, at its first use in the process."""
    kernel_threads_setting()  # a bad value is refused here, not silently ignored by the library
    lib = ctypes.CDLL(library)
    return lib.LatteKernelThreads(0), lib.LatteKernelThreads(1)
