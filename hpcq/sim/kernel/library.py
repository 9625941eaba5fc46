"""Build the C kernels on first use and load them with ctypes.

The shared library is compiled with the machine's C compiler (`$CC`, else gcc, else cc) for the CPU it
runs on (-march=native, OpenMP) and cached as `<cache>/<hash>.so`, the hash covering the sources, the
compiler, the flags and the CPU, so a cluster's login and compute nodes never share an incompatible build.
The cache is `$HPCQ_KERNEL_CACHE`, else `$XDG_CACHE_HOME/hpcq/kernels`, else `~/.cache/hpcq/kernels`.
Builds go to a private temporary name and are renamed into place, so MPI ranks building at once never
load a half-written file. Loading a library runs its code, so the cache folder must be this user's and
writable by no one else (created 0700), and so must each `.so` in it. When the cache fails that or is not
writable, `$TMPDIR/hpcq-kernels-<uid>` is used if it passes the same check (anyone can create that name
first), else a fresh private `mkdtemp` folder. When nothing can be built the simulator keeps its PyTorch
path; `hpcq doctor` and `kernel_status()` say why.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("real_gates.c", "real_gates_impl.h", "dense_impl.h", "gates_adjoint_impl.h")
#: must equal hpcq_abi_version() in real_gates.c
ABI_VERSION = 8
#: flag sets tried in order: the first is the fast one; the others keep the kernels usable where the
#: compiler lacks OpenMP or -march=native
FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)
COMMON_FLAGS = ("-shared", "-fPIC", "-std=gnu11")
BUILD_TIMEOUT_S = 300


class KernelUnavailable(RuntimeError):
    """The kernels could not be built or loaded; the message says why and what to install."""


@dataclass(frozen=True)
class KernelLibrary:
    """The loaded kernels and what they were built with."""

    cdll: ctypes.CDLL
    path: Path
    compiler: str
    flags: tuple[str, ...]
    vector_bytes: int
    openmp: bool
    dense_max_qubits: int  # widest block hpcq_dense_<prec> applies

    def function(self, name: str, precision: str, vectors_per_row: int = 1):
        """hpcq_forward_f32_nv1 and friends; hpcq_angles_, hpcq_dense_ and hpcq_gates_adjoint_ exist once per
        precision."""
        if name in ("angles", "dense", "gates_adjoint"):
            return getattr(self.cdll, f"hpcq_{name}_{precision}")
        return getattr(self.cdll, f"hpcq_{name}_{precision}_nv{vectors_per_row}")


def cache_dir() -> Path:
    if os.environ.get("HPCQ_KERNEL_CACHE"):
        return Path(os.environ["HPCQ_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hpcq" / "kernels"


def find_compiler() -> str | None:
    named = os.environ.get("CC")
    if named:
        return shutil.which(named) or (named if os.path.isfile(named) else None)
    return shutil.which("gcc") or shutil.which("cc")


def _cpu_identity() -> str:
    """What -march=native depends on: the architecture and, on Linux, the first CPU's model and flags."""
    identity = [platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "flags", "Features", "cpu model")):
                    identity.append(line.strip())
                if line.strip() == "":
                    break
    except OSError:
        identity.append(platform.processor())
    return "\n".join(identity)


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise KernelUnavailable(f"C compiler {compiler} does not run ({err})") from err
    return done.stdout.splitlines()[0] if done.stdout else ""


def _build_key(compiler: str, version: str, flags: tuple[str, ...], source_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((source_dir / name).read_bytes())
    for part in (compiler, version, " ".join(flags), _cpu_identity(), str(ABI_VERSION)):
        digest.update(part.encode())
    return digest.hexdigest()[:24]


def _unsafe_reason(path: Path) -> str | None:
    """Why code at `path` (a cache folder or a built library) could be someone else's, or None when it is
    this user's and no one else can write it."""
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{path} belongs to user id {info.st_uid}, not to you"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.filemode(info.st_mode)})"
    return None


def _private_dir(directory: Path) -> bool:
    """Create `directory` (0700) if missing; whether it is writable and safe to load libraries from."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory.is_dir() and os.access(directory, os.W_OK) and _unsafe_reason(directory) is None
    except OSError:
        return False


def _writable_cache() -> Path:
    """The configured cache, else this user's folder in $TMPDIR, else a fresh private one (removed at exit)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for directory in (cache_dir(), Path(tempfile.gettempdir()) / f"hpcq-kernels-{uid}"):
        if _private_dir(directory):
            return directory
    fresh = Path(tempfile.mkdtemp(prefix="hpcq-kernels-"))
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


def _compile(compiler: str, flags: tuple[str, ...], source_dir: Path, target: Path) -> str | None:
    """Build into `target` atomically; return None, or the compiler's complaint."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    command = [compiler, *flags, *COMMON_FLAGS, "-o", str(partial), str(source_dir / SOURCES[0]), "-lm"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        partial.unlink(missing_ok=True)
        return str(err)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[0] if lines else f"exit status {done.returncode}"
    os.chmod(partial, 0o700)  # whatever the umask: no one else may change code this user will load
    os.replace(partial, target)
    return None


def _open(path: Path, compiler: str, flags: tuple[str, ...]) -> KernelLibrary:
    cdll = ctypes.CDLL(str(path))
    cdll.hpcq_abi_version.restype = ctypes.c_int
    if cdll.hpcq_abi_version() != ABI_VERSION:
        raise KernelUnavailable(f"{path} has ABI {cdll.hpcq_abi_version()}, expected {ABI_VERSION}")
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    for precision in ("f32", "f64"):
        for nv in (1, 2, 4):
            forward = getattr(cdll, f"hpcq_forward_{precision}_nv{nv}")
            # n, n_stages, stages, stage_qubits, ops, psi0, batch, psi, n_chunks, cos, sin, n_obs, obs, values,
            # threads
            forward.argtypes = [integer, integer, pointer, pointer, pointer, pointer, integer, pointer, integer,
                                pointer, pointer, integer, pointer, pointer, integer]
            forward.restype = integer
            backward = getattr(cdll, f"hpcq_backward_{precision}_nv{nv}")
            # n, n_stages, stages, stage_qubits, ops, psi, lam, grad_psi0, batch, n_chunks, cos, sin, n_obs, obs,
            # g, n_params, grad, threads
            backward.argtypes = [integer, integer, pointer, pointer, pointer, pointer, pointer, pointer, integer,
                                 integer, pointer, pointer, integer, pointer, pointer, integer, pointer, integer]
            backward.restype = integer
    for precision in ("f32", "f64"):
        angles = getattr(cdll, f"hpcq_angles_{precision}")
        # n_rot, source, values, weights, features, n_features, batch, padded, cos, sin
        angles.argtypes = [integer, pointer, pointer, pointer, pointer, integer, integer, integer, pointer, pointer]
        angles.restype = None
        dense = getattr(cdll, f"hpcq_dense_{precision}")
        # n_bits, state, k, positions, matrix, threads
        dense.argtypes = [integer, pointer, integer, pointer, pointer, integer]
        dense.restype = integer
        gates = getattr(cdll, f"hpcq_gates_adjoint_{precision}")
        # n_bits, psi, lam, n_ops, ops, mats, grads, threads
        gates.argtypes = [integer, pointer, pointer, integer, pointer, pointer, pointer, integer]
        gates.restype = integer
    cdll.hpcq_dense_max_qubits.restype = integer
    # n_rot, source, grad, batch, padded, grad_weights, grad_features, n_features
    cdll.hpcq_scatter_gradients.argtypes = [integer, pointer, pointer, integer, integer, pointer, pointer, integer]
    cdll.hpcq_scatter_gradients.restype = None
    return KernelLibrary(cdll, path, compiler, flags, int(cdll.hpcq_vector_bytes()), bool(cdll.hpcq_openmp()),
                         int(cdll.hpcq_dense_max_qubits()))


def build_library(compiler: str | None = None,
                  flag_sets: tuple[tuple[str, ...], ...] = FLAG_SETS) -> KernelLibrary:
    """Load the cached build for this machine, compiling it first if needed; raise KernelUnavailable.

    `flag_sets`: the compiler flags to try in order (tests force a vector width with -DVBYTES=32 or 64)."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise KernelUnavailable(
            "no C compiler found (set CC, or install gcc: apt-get install gcc / dnf install gcc / module load gcc)"
        )
    version = _compiler_version(compiler)
    source_dir = Path(__file__).resolve().parent
    directory = _writable_cache()
    complaints = []
    for flags in flag_sets:
        target = directory / f"{_build_key(compiler, version, flags, source_dir)}.so"
        if not target.exists():
            complaint = _compile(compiler, flags, source_dir, target)
            if complaint is not None:
                complaints.append(f"{' '.join(flags)}: {complaint}")
                continue
        unsafe = _unsafe_reason(target)
        if unsafe is not None:
            complaints.append(f"not loading {target}: {unsafe}; delete it")
            continue
        try:
            return _open(target, compiler, flags)
        except OSError as err:
            complaints.append(f"{target}: {err}")
    raise KernelUnavailable(f"building the kernels with {compiler} failed ({'; '.join(complaints)})")


_LOCK = threading.Lock()
_LOADED: dict[str, KernelLibrary | KernelUnavailable] = {}


def load_library() -> KernelLibrary | None:
    """The kernels, built once per process; None (with one warning per process) when they cannot be."""
    with _LOCK:
        if "library" not in _LOADED:
            try:
                _LOADED["library"] = build_library()
            except KernelUnavailable as err:
                _LOADED["library"] = err
                warnings.warn(f"hpcq: compiled statevector kernels unavailable, using the PyTorch path: {err}",
                              RuntimeWarning, stacklevel=3)
        loaded = _LOADED["library"]
    return loaded if isinstance(loaded, KernelLibrary) else None


def kernel_status() -> tuple[bool, str]:
    """(usable, detail) for `hpcq doctor`, which shows the reason itself instead of a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        library = load_library()
    if library is None:
        return False, str(_LOADED["library"])
    threads = "OpenMP" if library.openmp else "no OpenMP: one thread"
    return True, f"{library.path} ({library.compiler} {' '.join(library.flags)}; {library.vector_bytes}-byte " \
                 f"vectors, {threads})"
