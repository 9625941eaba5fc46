# QuanTA / LoRA / full fine-tuning runs. Experiments with ranks > 1 train data-parallel over MPI: their
# rule, adapters_mpi, carries the `mpi` resource (the Slurm plugin refuses an MPI job of one task).


for mpi in (False, True):

    rule:
        name:
            "adapters_mpi" if mpi else "adapters"
        input:
            unpack(train_inputs),
        output:
            RUN_PATTERN,
        log:
            RUN_LOG_PATTERN,
        wildcard_constraints:
            family="adapters",
            experiment=adapter_names(mpi),
        params:
            overrides=train_overrides,
        threads: per_wildcard_threads(experiment_spec, adapter_ranks if mpi else None)
        resources:
            **per_wildcard_resources(experiment_spec, tasks_of=adapter_ranks if mpi else None, nodes=True),
        shell:
            train_command(mpi)
