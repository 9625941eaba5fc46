"""Site profiles: a dry run of a study through each profile gives the MPI jobs the sbatch line and launcher the
site needs. The sbatch line is built by the Slurm executor plugin's own function from the dry run's resources,
so no Slurm is needed here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from workflow_support import REPO, shared_data, snakemake, write_study

PROFILES = REPO / "slurm" / "profiles"


class Resources(dict):
    """The plugin reads resources both as `get(name)` and as attributes."""

    __getattr__ = dict.__getitem__


def as_number(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def dry_run_jobs(output: str) -> list[dict]:
    """Each job of a `snakemake -n -p` printout: rule, wildcards, resources, threads and shell command."""
    jobs = []
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:\n)", output):
        header = re.match(r"\s*(?:local)?rule (\w+):", block)
        if not header:
            continue
        fields = dict(re.findall(r"^\s*(\w+): (.*)$", block, re.MULTILINE))
        resources = Resources(
            (key, as_number(value)) for key, _, value in (item.partition("=") for item in fields["resources"].split(", "))
        )
        wildcards = dict(item.split("=", 1) for item in fields.get("wildcards", "").split(",") if item)
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append({"rule": header[1], "wildcards": wildcards, "resources": resources,
                     "threads": int(fields.get("threads", 1)), "shell": shell[1] if shell else ""})
    return jobs


def sbatch_line(job: dict) -> str:
    """The sbatch command the Slurm executor plugin would submit for this job."""
    resources = job["resources"]
    params = {
        "run_uuid": "test", "slurm_logfile": "log", "comment_str": job["rule"], "workdir": "/work",
        "account": f"-A {resources['slurm_account']}" if "slurm_account" in resources else "",
        "partition": f"-p {resources['slurm_partition']}" if "slurm_partition" in resources else "",
    }
    return get_submit_command(SimpleNamespace(resources=resources, threads=job["threads"]), params)


def scaling_job(profile: str, study: Path, name: str, workdir: Path) -> dict:
    result = snakemake(workdir, "-n", "-p", "--forceall", "--profile", str(PROFILES / profile), "--configfile", str(study))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (job,) = [j for j in dry_run_jobs(result.stdout) if j["rule"] == "scaling_mpi" and j["wildcards"]["name"] == name]
    return job


@pytest.mark.parametrize(
    ("profile", "sbatch_flags", "launch"),
    [
        ("frontier", ["-A PROJECT", "-p batch", "--nodes=2048", "--ntasks=16384", "--cpus-per-task=7"],
         "srun -c 7 --gpus-per-task=1 --gpu-bind=closest -n 16384 apptainer exec --rocm"),
        ("nvidia", ["-A ACCOUNT", "-p gpu", "--nodes=2048", "--ntasks=16384", "--cpus-per-task=8",
                    "--gpus-per-task=1", "--mem 200000"],
         "srun --mpi=pmix --gpus-per-task=1 -n 16384 apptainer exec --nv"),
    ],
    ids=["frontier", "nvidia"],
)
def test_site_profile_gives_the_46_qubit_run_its_nodes_ranks_and_gpus(
    tmp_path: Path, profile: str, sbatch_flags: list[str], launch: str
) -> None:
    job = scaling_job(profile, REPO / "config" / "scaling.yaml", "nodes-2048", tmp_path)
    line = sbatch_line(job)
    for flag in sbatch_flags:
        assert f" {flag}" in line, line
    if profile == "frontier":
        assert "--mem" not in line, "Frontier allocates whole nodes; no memory request"
    command = job["shell"].split("; ", 1)[1]
    assert command.startswith(launch), command
    words = shlex.split(command)
    assert words[words.index("--qubits") + 1] == "42..46" and words[words.index("--ranks") + 1] == "16384"


def test_local_profile_runs_mpi_jobs_through_srun_pmix(tmp_path: Path) -> None:
    study = {
        "study": "profile",
        "data": {"source": str(shared_data()), "root": str(tmp_path / "data"), "datasets": []},
        "scaling": [{"name": "tiny", "qubits": "4..6", "ranks": [1, 2]}],
    }
    job = scaling_job("local", write_study(tmp_path, study), "tiny", tmp_path)
    line = sbatch_line(job)
    assert " -p debug" in line and " --ntasks=2" in line and "--mem 2000" in line and " -A" not in line, line
    assert job["shell"].split("; ", 1)[1].startswith("srun --mpi=pmix -n 2 hpcq bench scale")
