"""What `hpcq bench scale` runs, as its command line gives it: the spec with its checks, and the parsers of
`--qubits A..B` and `--ranks 1,2,4` (study validation uses the same ones)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcq.errors import ConfigError
from hpcq.sim.precision import dtype_named

BACKENDS = ("distributed", "statevector", "custatevec")


@dataclass(frozen=True)
class ScaleSpec:
    """What `hpcq bench scale` runs: every qubit count in `qubits` (inclusive) on every rank count."""

    qubits: tuple[int, int]
    ranks: tuple[int, ...]
    backend: str = "distributed"
    layers: int = 1
    connectivity: int = 1
    reuploads: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    min_seconds: float = 1.0
    fused_qubits: int | None = None
    kernel: str = "auto"
    peers: tuple[str, ...] = ()
    gradient: bool = False

    def validate(self) -> None:
        first, last = self.qubits
        if not 2 <= first <= last:
            raise ConfigError(f"--qubits {first}..{last} must satisfy 2 <= A <= B")
        for r in self.ranks:
            if r < 1 or r & (r - 1):
                raise ConfigError(f"--ranks {r} is not a power of two; each global qubit doubles the ranks")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r} is not timed by bench scale; "
                              f"use one of {', '.join(BACKENDS)}")
        from hpcq.sim.kernel.choice import KERNELS

        if self.kernel not in KERNELS:
            raise ConfigError(f"--kernel {self.kernel!r} must be one of {', '.join(KERNELS)}")
        if self.backend != "distributed" and max(self.ranks) > 1:
            raise ConfigError(f"--backend {self.backend} runs on one rank; "
                              "use --ranks 1 or --backend distributed")
        dtype_named(self.dtype)
        if not self.min_seconds > 0:
            raise ConfigError(f"--min-seconds {self.min_seconds} must be positive")
        if self.fused_qubits is not None and not 1 <= self.fused_qubits <= 10:
            raise ConfigError(f"--fused-qubits {self.fused_qubits} must be between 1 and 10")
        if self.peers and max(self.ranks) > 1:
            raise ConfigError(f"--peer {','.join(self.peers)} times single-process simulators; use --ranks 1")

    def arguments(self, out: Path, as_json: bool) -> list[str]:
        """The command-line arguments that reproduce this spec (for relaunching under mpiexec)."""
        args = ["bench", "scale", "--qubits", f"{self.qubits[0]}..{self.qubits[1]}",
                "--ranks", ",".join(map(str, self.ranks)), "--backend", self.backend,
                "--layers", str(self.layers), "--connectivity", str(self.connectivity),
                "--reuploads", str(self.reuploads), "--dtype", self.dtype,
                "--device", self.device, "--min-seconds", str(self.min_seconds),
                "--kernel", self.kernel, "--out", str(out)]
        if self.fused_qubits:
            args += ["--fused-qubits", str(self.fused_qubits)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.peers:
            args += ["--peer", ",".join(self.peers)]
        if self.gradient:
            args.append("--gradient")
        return args + (["--json"] if as_json else [])


def parse_qubits(text: str) -> tuple[int, int]:
    """"A..B" (or a single "N") → (A, B)."""
    parts = text.split("..")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(f"--qubits {text!r} must be a range A..B such as 10..14 (or one number)")
    return values[0], values[-1]


def parse_ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(sorted({int(r) for r in text.split(",") if r.strip()}))
    except ValueError:
        ranks = ()
    if not ranks:
        raise ConfigError(f"--ranks {text!r} must be a comma-separated list of rank counts such as 1,2,4")
    return ranks
