"""The study engine (hpcq.study) without Snakemake: grid expansion into `hpcq train` runs, validation that
names the study key of everything a job would refuse, and the command lines and resources of the rules."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hpcq.study import Study, StudyError, load_study
from hpcq.study.commands import Commands, job_resources, launch_params, per_wildcard_threads
from hpcq.study.grid import override, value_slug
from workflow_support import STUDY_SCHEMA, head_study, scaling_only


def load(study: dict, files: tuple[Path, ...] = ()) -> Study:
    return load_study(study, files, STUDY_SCHEMA)


def set_key(study: dict, dotted: str, value) -> dict:
    """Assign study[a][b]... for a dotted path whose integer parts index lists."""
    *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    node = study
    for part in parents:
        node = node[part]
    node[last] = value
    return study


def test_grid_expands_to_one_run_per_point_and_seed(tmp_path: Path) -> None:
    grid = {"model.n_qubits": [4, 6], "train.lr": [0.1, 0.01]}
    study = load(head_study(tmp_path, grid, {"model.layers": 1}))
    runs = study.experiments["quantum_heads"]["grid"].runs
    ids = [f"n_qubits-{q}_lr-{lr}_seed-{s}" for q in (4, 6) for lr in (0.1, 0.01) for s in (0, 1)]
    assert list(runs) == ids
    shards = str(tmp_path / "data" / "embeddings" / "sst2-sentences" / "packaged")
    assert runs["n_qubits-6_lr-0.01_seed-1"].overrides == (
        "model.layers=1", "model.n_qubits=6", "train.lr=0.01", f"data.embeddings_dir={shards}", "seed=1")
    assert list(study.prepared) == [shards]
    assert study.prepared[shards].arguments == "--dataset sst2-sentences --model packaged"
    wildcards = SimpleNamespace(family="quantum_heads", experiment="grid", run="n_qubits-4_lr-0.1_seed-0")
    assert study.train_inputs(wildcards) == {"config": str(tmp_path / "head.yaml"), "data": shards}
    assert study.train_overrides(wildcards).startswith("--set model.layers=1 --set model.n_qubits=4 ")
    assert study.runs() == [f"results/reject/runs/quantum_heads/grid/{run}.h5" for run in runs]
    assert study.targets()[-2:] == ["results/reject/aggregate", "results/reject/report"]


def test_values_keep_their_type_and_spell_path_safe() -> None:
    assert override("train.lr", 0.001) == "train.lr=0.001"
    assert override("model.kind", "logreg") == "model.kind=logreg"
    assert override("adapter.axes", [4, 8]) == "adapter.axes=[4, 8]"
    assert value_slug({"r": 8, "on": True}) == "r-8+on-true"
    assert value_slug("a/b c") == "a-b-c"


def test_grid_keys_whose_run_ids_clash_are_rejected(tmp_path: Path) -> None:
    clash = r"study config: quantum_heads\[0\].grid: 'train.seed' ends in 'seed'"
    with pytest.raises(StudyError, match=clash):
        load(head_study(tmp_path, {"train.seed": [1]}))


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("scaling.0.backend", "quantum-annealer", "scaling[0].backend"),
        ("scaling.0.qubits", "0..4", "scaling[0].qubits"),
        # What `hpcq bench scale` refuses (its ScaleSpec): one qubit, ranks that are not a power of two.
        ("scaling.0.qubits", "1..3", "scaling[0].qubits"),
        ("scaling.0.ranks", [1, 3], "scaling[0].ranks"),
        # JSON Schema takes 2.0 for an integer; Slurm and mpiexec would not.
        ("scaling.0.threads", 2.0, "scaling[0].threads"),
        ("scaling.0.ranks", [0, 2], "scaling[0].ranks[0]"),
        ("data.source", "/nonexistent/hpcq-data", "data.source"),
        ("data.datasets", ["sst2-sentences", "imdb"], "data.datasets[1]"),
        ("data.root", "/nonexistent/hpcq-root", "data.root"),
        ("energy", {"config": "/nonexistent/crossover.yaml"}, "energy.config"),
    ],
)
def test_bad_study_value_names_the_key(tmp_path: Path, key: str, value, named: str) -> None:
    study = scaling_only(tmp_path)
    if key == "data.root":
        study["data"]["source"] = None  # data sets are then read from data.root, which must exist
    with pytest.raises(StudyError) as caught:
        load(set_key(study, key, value))
    assert str(caught.value).startswith(f"study config: {named}:")


def test_energy_config_is_checked_as_hpcq_energy_reads_it(tmp_path: Path) -> None:
    bad = tmp_path / "crossover.yaml"
    bad.write_text("- not a mapping\n")
    with pytest.raises(StudyError, match=r"^study config: energy.config: energy config .* YAML mapping"):
        load({**scaling_only(tmp_path), "energy": {"config": str(bad)}})


@pytest.mark.parametrize(
    ("set_", "grid", "named"),
    [
        ({}, {"model.n_qubits": [4, 0]}, "model.n_qubits"),
        ({"model.backend": "quantum-annealer"}, {"model.n_qubits": [4]}, "model.backend"),
    ],
)
def test_bad_run_value_names_the_point_and_key(tmp_path: Path, set_: dict, grid: dict, named: str) -> None:
    with pytest.raises(StudyError, match=r"^study config: quantum_heads\[0\]") as caught:
        load(head_study(tmp_path, grid, set_))
    assert named in str(caught.value)


def test_run_reading_an_unstaged_data_set_is_rejected(tmp_path: Path) -> None:
    study = head_study(tmp_path, {"model.n_qubits": [4]})
    study["data"]["datasets"] = ["glue"]
    point = r"^study config: quantum_heads\[0\].grid\[model.n_qubits=4\]:"
    with pytest.raises(StudyError, match=point) as caught:
        load(study)
    assert "'sst2-sentences'; add it to data.datasets" in str(caught.value)


def test_duplicate_keys_name_the_file_or_the_experiment(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(scaling_only(tmp_path)) + "report: true\nreport: false\n")
    with pytest.raises(StudyError, match=f"^study config: study file {path} is not valid YAML.*'report'"):
        load(scaling_only(tmp_path), (path,))
    study = head_study(tmp_path, {"model.n_qubits": [4]})
    (tmp_path / "head.yaml").write_text("task: head\nseed: 0\nseed: 1\n")
    with pytest.raises(StudyError, match=r"^study config: quantum_heads\[0\].config: run config.*'seed'"):
        load(study)


def test_scaling_jobs_get_the_options_the_study_checked(tmp_path: Path) -> None:
    study = load(scaling_only(tmp_path))
    wildcards = SimpleNamespace(name="small")
    assert study.scaling_options(wildcards) == "--qubits 4..6 --ranks 1,2 --backend distributed"
    assert study.scaling_tasks(wildcards) == 2
    assert (study.scaling_names(mpi=True), study.scaling_names(mpi=False)) == ("small", "(?!)")
    assert study.scaling_outputs() == ["results/reject/runs/scaling/small.h5",
                                       "results/reject/runs/scaling/small"]


def test_commands_start_with_data_threads_launcher_and_container() -> None:
    commands = Commands("/data root", "apptainer exec img.sif")
    assert commands.hpcq("aggregate x") == (
        "export HPCQ_DATA='/data root' OMP_NUM_THREADS={threads}; apptainer exec img.sif hpcq aggregate x")
    launched = commands.launched("bench scale")
    assert launched == ("export HPCQ_DATA='/data root' OMP_NUM_THREADS={params.rank_threads}; {params.launch}"
                        "apptainer exec img.sif hpcq bench scale")
    resources = SimpleNamespace(mpi="srun --mpi=pmix", tasks=4, cpus_per_task=7)
    mpi, single = launch_params(mpi=True), launch_params(mpi=False)
    assert mpi["launch"](None, resources=resources) == "srun --mpi=pmix -n 4 "
    assert mpi["rank_threads"](None, resources=resources) == 7
    assert (single["launch"], single["rank_threads"](None, threads=3)) == ("", 3)


def test_resources_grow_with_the_attempt_and_count_every_rank() -> None:
    resources = job_resources({"runtime": 30, "threads": 2}, tasks=4)
    assert resources["runtime"](None, attempt=2) == 60
    assert (resources["tasks"], resources["cpus_per_task"]) == (4, 2)
    assert "tasks" not in job_resources({"runtime": 30, "threads": 2})
    threads = per_wildcard_threads(lambda wildcards: {"threads": 3}, lambda wildcards: 8)
    assert threads(None) == 24
