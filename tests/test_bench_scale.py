"""`hpcq bench scale`: it starts itself under mpiexec (and works when already under mpiexec), its runs agree
across rank counts, its run files carry what `hpcq energy` and `hpcq aggregate` read, oversized runs are
skipped by the memory plan, and bad arguments are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcq.bench.scale import ScaleSpec, cpu_last_level_cache_bytes, parse_qubits, parse_ranks, run_scale_bench, scaling_tables
from hpcq.energy.qualify import qualify
from hpcq.errors import ConfigError, ResourceError
from hpcq.results.aggregate import collect_runs
from hpcq.results.schema import read_run
from test_sim_distributed import mpi_env, mpiexec

ARGS = ["bench", "scale", "--qubits", "8..9", "--ranks", "1,2", "--min-seconds", "0.05", "--json"]


def _run(command: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_report(report: dict, out) -> None:
    runs = {(r["n_qubits"], r["ranks"]): r for r in report["runs"]}
    assert sorted(runs) == [(8, 1), (8, 2), (9, 1), (9, 2)]
    for n in (8, 9):
        single, split = runs[n, 1], runs[n, 2]
        assert abs(single["z0"] - split["z0"]) < 1e-5  # the same state, whether split or not
        assert single["comm_bytes"] == 0 and split["comm_bytes"] > 0 and split["exchanges"] > 0
        assert split["comm_time_s"] > 0
        for row in (single, split):
            assert row["bytes_moved"] == 2 * 4 * 2**n  # read + write of a float32 real state per pass
            assert row["time_per_pass_s"] > 0 and row["copy_gbps"] > 0 and row["passes"] >= 2
            assert row["cache_bytes"] == cpu_last_level_cache_bytes() and row["cache_source"]
            assert row["achieved_gbps"] == pytest.approx(row["bytes_moved"] / row["ranks"] / row["time_per_pass_s"] / 1e9)
    assert {(e["n_qubits"], e["ranks"]) for e in report["strong"]} == {(8, 2), (9, 2)}
    assert [(e["n_qubits"], e["local_qubits"]) for e in report["weak"]] == [(9, 8)]
    summary = read_run(out)
    assert summary.kind == "bench_scale_summary" and summary.final["runs"] == 4
    assert list(summary.extra["scaling"]["strong"]["ranks"]) == [2, 2]
    run = read_run(out.parent / out.stem / "n09_r2.h5")
    assert run.kind == "bench_scale" and run.final["ranks"] == 2 and run.config["n_qubits"] == 9
    assert {"method", "joules", "mean_watts", "interval_s", "devices"} <= set(run.energy)
    assert run.energy["ranks_metered"] == 2 and run.energy["joules"] >= 0


@pytest.mark.mpi
def test_starts_itself_under_mpiexec_and_feeds_the_energy_fit(tmp_path):
    out = tmp_path / "scale.h5"
    env = mpi_env()
    report = _run([sys.executable, "-m", "hpcq", *ARGS, "--out", str(out)], env)
    _check_report(report, out)
    runs = collect_runs(tmp_path, progress=False).runs
    assert set(runs["run_kind"]) == {"bench_scale", "bench_scale_summary"}
    found = qualify(runs)  # CPU runs of 8-9 qubit states: reported, never fed to the GPU side
    assert not found.overrides
    assert {r.run for r in found.rejections} == {f"scale/n0{n}_r{r}.h5" for n in (8, 9) for r in (1, 2)}
    assert {r.reason for r in found.rejections} == {"it ran on cpu; the model's GPU side takes only GPU runs"}
    assert found.fits[0].device == "cpu" and "cache" in found.fits[0].not_in_regime


@pytest.mark.mpi
def test_runs_when_already_under_mpiexec(tmp_path):
    out = tmp_path / "scale.h5"
    report = _run([*mpiexec(2), sys.executable, "-m", "hpcq", *ARGS, "--out", str(out)], mpi_env())
    _check_report(report, out)


def test_a_run_that_does_not_fit_is_skipped_by_the_memory_plan():
    spec = ScaleSpec((40, 40), (1,), min_seconds=0.01)
    with pytest.raises(ResourceError, match=r"n=40 on 1 ranks: a 40-qubit state .* Fix: use at least \d+ ranks"):
        run_scale_bench(spec, say=lambda _: None)


def test_scaling_tables():
    rows = [{"n_qubits": n, "ranks": r, "time_per_pass_s": t} for n, r, t in
            [(10, 1, 1.0), (11, 1, 2.0), (11, 2, 1.25), (12, 4, 1.0)]]
    tables = scaling_tables(rows)
    assert tables["strong"] == [{"n_qubits": 11, "ranks": 2, "efficiency": 0.8, "speedup": 1.6}]
    assert tables["weak"] == [{"n_qubits": 11, "local_qubits": 10, "ranks": 2, "efficiency": 0.8},
                              {"n_qubits": 12, "local_qubits": 10, "ranks": 4, "efficiency": 1.0}]


def test_bad_arguments_are_refused(monkeypatch):
    assert parse_qubits("10..14") == (10, 14) and parse_qubits("12") == (12, 12)
    assert parse_ranks("4,1,2") == (1, 2, 4)
    with pytest.raises(ConfigError, match="must be a range A..B"):
        parse_qubits("10-14")
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_ranks("two")
    with pytest.raises(ConfigError, match="not a power of two"):
        ScaleSpec((10, 12), (1, 3)).validate()
    with pytest.raises(ConfigError, match="--backend statevector runs on one rank"):
        ScaleSpec((10, 12), (1, 2), backend="statevector").validate()
    with pytest.raises(ConfigError, match="--kernel 'cuda' must be one of auto, compiled, torch"):
        ScaleSpec((10, 12), (1,), kernel="cuda").validate()
    with pytest.raises(ConfigError, match="--fused-qubits 11 must be between 1 and 10"):
        ScaleSpec((10, 12), (1,), fused_qubits=11).validate()
    with pytest.raises(ConfigError, match="needs 2 MPI ranks but this job has 1"):
        run_scale_bench(ScaleSpec((8, 8), (1, 2)))
    from hpcq.bench.scale.launch import RELAUNCHED, relaunch

    monkeypatch.setitem(os.environ, RELAUNCHED, "1")
    with pytest.raises(ConfigError, match="still sees one"):
        relaunch(2, ["bench", "scale"], None)


def test_last_level_cache_from_sysfs(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "64K"),
                                                 (2, "Unified", "2048K"), (3, "Unified", "491520K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    assert cpu_last_level_cache_bytes(tmp_path) == 480 * 2**20
    assert cpu_last_level_cache_bytes(tmp_path / "absent") == 0


def _installed_peers() -> tuple[str, ...]:
    import importlib.util

    from hpcq.bench.scale.peers import PEERS

    return tuple(p for p, (module, _) in PEERS.items() if importlib.util.find_spec(module) is not None)


def test_peers_run_the_same_gates_agree_and_are_stored(tmp_path):
    from hpcq.bench.scale import write_results

    peers = _installed_peers()
    if not peers:
        pytest.skip("no bench scale peer installed (pip install 'hpcq[bench]')")
    report = run_scale_bench(ScaleSpec((6, 7), (1,), min_seconds=0.02, peers=peers), say=lambda _: None)
    write_results(report, tmp_path / "peers.h5")
    for row in report["runs"]:
        for peer in peers:
            assert abs(row[f"{peer}_z0"] - row["z0"]) < 1e-4
            assert row[f"{peer}_ratio"] == pytest.approx(row[f"{peer}_time_per_call_s"] / row["time_per_call_s"])
    stored = read_run(tmp_path / "peers" / "n07_r1.h5").final
    assert {f"{peer}_ratio" for peer in peers} <= set(stored)


def test_gradient_calls_are_timed_against_the_forward_and_stored(tmp_path):
    from hpcq.bench.scale import write_results

    spec = ScaleSpec((6, 7), (1,), min_seconds=0.02, gradient=True)
    assert spec.arguments(Path("x.h5"), False)[-1] == "--gradient"
    report = run_scale_bench(spec, say=lambda _: None)
    write_results(report, tmp_path / "gradient.h5")
    for row in report["runs"]:
        assert row["gradient_time_per_call_s"] > 0
        ratio = row["gradient_time_per_call_s"] / row["time_per_call_s"]
        assert row["gradient_ratio"] == pytest.approx(ratio)
    stored = read_run(tmp_path / "gradient" / "n07_r1.h5").final
    assert stored["gradient_ratio"] == pytest.approx(report["runs"][1]["gradient_ratio"])
    assert "gradient_ratio" not in run_scale_bench(ScaleSpec((6, 6), (1,), min_seconds=0.01),
                                                   say=lambda _: None)["runs"][0]


def test_a_peer_that_disagrees_stops_the_benchmark():
    import torch

    from hpcq.bench.scale.peers import peer_columns
    from hpcq.circuits import reuploading_ansatz

    circuit = reuploading_ansatz(4, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    weights, features = torch.rand(circuit.n_weights, generator=generator) + 1, torch.rand(1, 4, generator=generator) + 1
    z0 = 1.0  # <Z_0> of |0000>, before any gate: not this circuit's
    with pytest.raises(AssertionError, match="aer gives <Z_0> = .* not a benchmark"):
        peer_columns(ScaleSpec((4, 4), (1,), min_seconds=0.01, peers=("aer",)), circuit, weights, features, z0, 1.0)


def test_peer_arguments_are_checked():
    from hpcq.bench.scale.peers import parse_peers

    assert parse_peers(None) == () and parse_peers("aer, aer") == ("aer",)
    with pytest.raises(ConfigError, match="--peer 'quest' is not a bench scale peer; use any of qsim, aer, qulacs"):
        parse_peers("aer,quest")
    with pytest.raises(ConfigError, match="--peer aer times single-process simulators; use --ranks 1"):
        ScaleSpec((10, 12), (1, 2), peers=("aer",)).validate()
    assert ScaleSpec((10, 12), (1,), peers=("qsim", "aer")).arguments(Path("x.h5"), False)[-2:] == ["--peer", "qsim,aer"]
