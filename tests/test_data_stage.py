"""`hpcq stage`: verified, idempotent copies of the real data sets into a data root."""

import os
import shutil
import subprocess
import sys

import pytest

from hpcq.data import data_root, load_glue, load_sst2_sentences, stage
from hpcq.data.stage import file_sha256, readme_checksums
from hpcq.errors import DataError

SHARED_DATA = data_root()


def test_readme_checksums_cover_the_listed_files():
    listed = readme_checksums(SHARED_DATA / "glue" / "README.md")
    assert len(listed) == 15
    rte_train = (SHARED_DATA / "glue" / "RTE" / "train.tsv").resolve()
    assert listed[rte_train] == "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c"
    assert len(readme_checksums(SHARED_DATA / "sst2-sentences" / "README.md")) == 3


def test_stage_copies_verifies_and_is_idempotent(tmp_path):
    dest = tmp_path / "root"
    first = stage(SHARED_DATA, dest, ["sst2-sentences", "glue/RTE"], progress=False)
    assert len(first.copied) == 7 and not first.unchanged  # 3 + 3 data files, 1 README
    assert first.readme_verified == 6
    assert len(load_sst2_sentences(dest)) == 9613 and len(load_glue("RTE", dest)) == 5767
    mtimes = {path: path.stat().st_mtime_ns for path in first.copied}
    again = stage(SHARED_DATA, dest, ["sst2-sentences", "glue/RTE"], progress=False)
    assert not again.copied and sorted(again.unchanged) == sorted(first.copied)
    assert {path: path.stat().st_mtime_ns for path in again.unchanged} == mtimes
    # a damaged staged file is replaced by a verified copy
    damaged = dest / "glue" / "RTE" / "dev.tsv"
    damaged.write_text("garbage")
    repaired = stage(SHARED_DATA, dest, ["glue/RTE"], progress=False)
    assert repaired.copied == [damaged] and file_sha256(damaged) == file_sha256(
        SHARED_DATA / "glue/RTE/dev.tsv"
    )
    assert not list(dest.rglob(".*.tmp"))


def test_corrupt_source_is_refused_against_the_readme(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SHARED_DATA / "sst2-sentences", source / "sst2-sentences")
    corrupt = source / "sst2-sentences" / "stsa.binary.dev"
    corrupt.chmod(0o644)
    corrupt.write_bytes(corrupt.read_bytes().replace(b"1 ", b"0 ", 1))
    with pytest.raises(DataError, match=r"stsa\.binary\.dev copies with sha256 .* its README lists 02fedc82"):
        stage(source, tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest" / "sst2-sentences" / "stsa.binary.dev").exists()


def test_unknown_data_set_and_missing_source(tmp_path):
    with pytest.raises(DataError, match=r"data set\(s\) \['glue/QQP'\] not found under"):
        stage(SHARED_DATA, tmp_path, ["glue/QQP"], progress=False)
    with pytest.raises(DataError, match="is not a folder"):
        stage(tmp_path / "nowhere", tmp_path, progress=False)


def test_stage_cli(tmp_path):
    env = {**os.environ, "HPCQ_DATA": str(tmp_path)}
    command = [sys.executable, "-m", "hpcq", "stage", "--source", str(SHARED_DATA), "--dataset", "gsm8k"]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (
        f"staged into {tmp_path}: 3 copied, 0 already in place, 2 checked against README checksums"
        in result.stdout
    )


@pytest.mark.parametrize("name", ["../outside", "glue/../../outside"])
def test_data_set_names_that_escape_dest_are_refused(tmp_path, name):
    source, dest = tmp_path / "source", tmp_path / "root" / "data"
    (source / "glue").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not a data set")
    with pytest.raises(DataError, match=r"reach outside .* would be written outside .*; name folders under"):
        stage(source, dest, [name], progress=False)
    assert not (tmp_path / "root").exists()


def test_stage_cli_refuses_an_escaping_name_in_one_line(tmp_path):
    command = [sys.executable, "-m", "hpcq", "stage", "--source", str(SHARED_DATA), "--dest", str(tmp_path / "d"),
               "--dataset", "../outside"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "['../outside'] reach outside" in result.stderr and len(result.stderr.strip().splitlines()) == 1
