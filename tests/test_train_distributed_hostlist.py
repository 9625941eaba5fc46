"""Slurm host lists as multi-node training reads them to find rank 0: HPE Cray x-names with text after the
brackets, two bracket groups in one name, zero-padded Frontier nids. The pure-Python expansion is checked
against the lists written out by hand and, where Slurm's client is installed, against `scontrol show
hostnames` itself."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hpcq.errors import ConfigError
from hpcq.runtime import detect_launch, expand_hostlist, first_host, slurm_hostnames

CASES = {
    "x1000c0s[1-4]b0n0": ["x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0", "x1000c0s4b0n0"],
    "rack[1-2]-node[01-04]": [f"rack{r}-node0{n}" for r in (1, 2) for n in (1, 2, 3, 4)],
    "nid[001234-001237,001240]": ["nid001234", "nid001235", "nid001236", "nid001237", "nid001240"],
    "gpu[007-010,012],login1": ["gpu007", "gpu008", "gpu009", "gpu010", "gpu012", "login1"],
    "n[9-11]": ["n9", "n10", "n11"],
    "node12": ["node12"],
}
SCONTROL = shutil.which("scontrol")


@pytest.mark.parametrize("hostlist", CASES)
def test_expand_hostlist_writes_every_host_in_order(hostlist: str) -> None:
    assert expand_hostlist(hostlist) == CASES[hostlist]


@pytest.mark.parametrize("hostlist", CASES)
def test_first_host_of_a_hostlist_is_rank_0s_node(hostlist: str) -> None:
    assert first_host(hostlist) == CASES[hostlist][0]
    assert slurm_hostnames(hostlist) == CASES[hostlist]


@pytest.mark.skipif(SCONTROL is None, reason="Slurm's client (scontrol) is not installed")
@pytest.mark.parametrize("hostlist", CASES)
def test_expand_hostlist_agrees_with_scontrol(hostlist: str) -> None:
    done = subprocess.run([SCONTROL, "show", "hostnames", hostlist], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        # Slurm 22.05 refuses text after a bracket (x1000c0s[1-4]b0n0), on stderr with exit code 0, and so never
        # writes such a list; slurm_hostnames then expands it in Python
        pytest.skip(f"this scontrol does not read {hostlist!r}: {done.stderr.strip()}")
    assert expand_hostlist(hostlist) == done.stdout.split()


@pytest.mark.parametrize("bad", ["n[1-", "n[3-1]", "n[a]", "", "a,,b", "n]"])
def test_unreadable_hostlist_is_one_line_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"Slurm host list .*MASTER_ADDR") as error:
        expand_hostlist(bad)
    assert repr(bad) in str(error.value) and "\n" not in str(error.value)


def test_srun_launch_on_cray_hostlist_finds_the_first_node() -> None:
    launch = detect_launch({"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "3",
                            "SLURM_STEP_NODELIST": "x1000c0s[1-4]b0n0", "SLURM_JOB_ID": "42"})
    assert (launch.master_addr, launch.rank, launch.local_rank) == ("x1000c0s1b0n0", 3, 3)


def test_slurm_hostnames_without_scontrol_expands_in_python() -> None:
    assert slurm_hostnames("rack[1-2]-node[01-04]", scontrol="/nonexistent/scontrol") == CASES["rack[1-2]-node[01-04]"]
