# QuanTA / LoRA / full fine-tuning runs. Experiments with ranks > 1 train data-parallel over MPI: their
# rule, adapters_mpi, carries the `mpi` resource (the Slurm plugin refuses an MPI job of one task).


rule adapters:
    input:
        unpack(study.train_inputs),
    output:
        paths.run,
    log:
        paths.run_log,
    wildcard_constraints:
        family="adapters",
        experiment=study.adapter_names(mpi=False),
    params:
        overrides=study.train_overrides,
        **launch_params(mpi=False),
    threads: per_wildcard_threads(study.experiment_spec)
    resources:
        **per_wildcard_resources(study.experiment_spec, nodes=True),
    shell:
        commands.launched(TRAIN)


use rule adapters as adapters_mpi with:
    wildcard_constraints:
        family="adapters",
        experiment=study.adapter_names(mpi=True),
    params:
        **launch_params(mpi=True),
    threads: per_wildcard_threads(study.experiment_spec, study.adapter_ranks)
    resources:
        **per_wildcard_resources(study.experiment_spec, tasks_of=study.adapter_ranks, nodes=True),
