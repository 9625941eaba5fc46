"""The benchmark's report on the terminal: one row per run, then the scaling efficiencies."""

from __future__ import annotations

from typing import Any


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = report["spec"]
    first = report["runs"][0]
    kernel = f", kernel {first['kernel']}" if first["kernel"] else ""
    table = Table(title=f"bench scale: {spec['backend']} {spec['dtype']}, ansatz L={spec['layers']} "
                        f"C={spec['connectivity']} N={spec['reuploads']}, blocks of ≤{first['fused_qubits']} "
                        f"qubits{kernel} on {report['host']}")
    for column in ("qubits", "ranks", "ms / pass", "GB/s / rank", "copy GB/s", "of copy", "comm s / call",
                   "comm MiB / call", "energy J", "load"):
        table.add_column(column, justify="right")
    peers = spec.get("peers") or ()
    table.add_column("s / call", justify="right")
    if spec.get("gradient"):
        table.add_column("fwd+grad s (ratio)", justify="right")
    for peer in peers:
        table.add_column(f"{peer} s (ratio)", justify="right")
    for row in report["runs"]:
        table.add_row(str(row["n_qubits"]), str(row["ranks"]), f"{row['time_per_pass_s'] * 1e3:.3f}",
                      f"{row['achieved_gbps']:.2f}", f"{row['copy_gbps']:.2f}",
                      f"{row['bandwidth_fraction']:.0%}", f"{row['comm_time_s']:.3f}",
                      f"{row['comm_bytes'] / 2**20:.1f}", f"{row['energy']['joules']:.1f}",
                      f"{row['load_1min']:.1f}", f"{row['time_per_call_s']:.3f}",
                      *([f"{row['gradient_time_per_call_s']:.3f} ({row['gradient_ratio']:.1f}x)"]
                        if spec.get("gradient") else []),
                      *(f"{row[f'{p}_time_per_call_s']:.3f} ({row[f'{p}_ratio']:.1f}x)" for p in peers))
    terminal = Console().is_terminal
    console = Console(width=None if terminal else 140, highlight=False,
                      color_system="auto" if terminal else None)
    console.print(table)
    console.print(f"energy method: {report['runs'][0]['energy']['method']}; "
                  "load = 1-minute load average at the start of each run"
                  + ("; peer ratio = peer s / hpcq s (above 1: hpcq is faster)" if peers else "")
                  + ("; fwd+grad ratio = forward+gradient s / forward s" if spec.get("gradient") else ""))
    for entry in report["strong"]:
        console.print(f"strong scaling at {entry['n_qubits']} qubits, 1 → {entry['ranks']} ranks: "
                      f"efficiency {entry['efficiency']:.0%} (speed-up {entry['speedup']:.2f}x)")
    for entry in report["weak"]:
        console.print(f"weak scaling, {entry['local_qubits']} local qubits, 1 → {entry['ranks']} ranks: "
                      f"efficiency {entry['efficiency']:.0%}")
    for line in report["skipped"]:
        console.print(f"skipped: {line}")
