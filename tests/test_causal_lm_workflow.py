"""config/quanta-llama.yaml through the workflow: a dry run with each site profile gives every causal-LM run the
Slurm resources its study entry asks for (nodes, tasks, GPUs per task, the profile's launcher and cores), and
each job's `hpcq train` arguments resolve to the intended run config. The sbatch line is built by the Slurm
executor plugin's own functions, so no Slurm is needed."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.utils import set_gres_string
from test_slurm_profiles import PROFILES, dry_run_jobs, sbatch_line
from workflow_support import absolute_run_configs, load_study, shared_data, snakemake, write_study

from hpcq.train.config import load_config

STUDY = "quanta-llama"


def profile_resources(profile: str, rule: str) -> dict:
    return yaml.safe_load((PROFILES / profile / "profile.yaml").read_text())["set-resources"].get(rule, {})


@pytest.fixture(scope="module", params=["nvidia", "frontier", "local"])
def dry_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    folder = tmp_path_factory.mktemp(request.param)
    study = absolute_run_configs(load_study(STUDY))
    study["data"].update(source=str(shared_data()), root=str(folder / "data"))
    result = snakemake(folder, "-n", "-p", "--forceall", "--profile", str(PROFILES / request.param),
                       "--configfile", str(write_study(folder, study)), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [job for job in dry_run_jobs(result.stdout) if job["rule"] in ("adapters", "adapters_mpi")]
    return request.param, jobs


def full_sbatch(job: dict) -> str:
    """sbatch as the plugin submits it: its submit string plus the GPU/GRES flags it appends."""
    return sbatch_line(job) + set_gres_string(SimpleNamespace(resources=job["resources"]))


def test_every_run_gets_its_nodes_tasks_and_gpus(dry_run) -> None:
    profile, jobs = dry_run
    experiments = {e["name"]: e for e in load_study(STUDY)["adapters"]}
    runs = {name: len(e.get("grid", {}).get("method", [None])) * len(e["seeds"])
            for name, e in experiments.items()}
    seen = {name: 0 for name in experiments}
    for job in jobs:
        name = job["wildcards"][" experiment"].strip()
        seen[name] += 1
        spec, line = experiments[name], full_sbatch(job)
        ranks, nodes = spec.get("ranks", 1), spec.get("nodes", 1)
        assert job["rule"] == ("adapters_mpi" if ranks > 1 else "adapters")
        assert f" --nodes={nodes}" in line, line
        set_resources = profile_resources(profile, job["rule"])
        cpus = set_resources.get("cpus_per_task")
        if cpus:
            assert f" --cpus-per-task={cpus}" in line, line
        command = job["shell"].split("; ", 1)[1]
        if ranks > 1:
            assert f" --ntasks={ranks}" in line, line
            # one rank per GPU, started by the site's launcher (srun) inside the site's container
            assert command.startswith(f"{set_resources['mpi']} -n {ranks} "), command
            if profile == "nvidia":
                assert " --gpus-per-task=1" in line
        elif profile == "nvidia":
            assert " --gpus=1" in line, line
        elif profile == "frontier":
            assert " --gpus-per-task=1" in line, line
        if profile != "local":
            assert "apptainer exec" in command and (" -A ACCOUNT" in line or " -A PROJECT" in line)
        words = shlex.split(command)
        overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
        run = load_config(words[words.index("--config") + 1], overrides)
        assert run["task"] == "causal_lm" and "--resume" in words
        assert run["distributed"]["strategy"] == ("fsdp" if run["method"] == "full" else "auto")
        assert run["model"]["name"] == "meta-llama/Llama-2-7b-hf" and run["adapter"]["axes"] == "official"
    assert seen == runs

