# Quantum heads over frozen embeddings: many small runs, packed into group jobs (profile group-components).


rule quantum_heads:
    input:
        unpack(study.train_inputs),
    output:
        paths.run,
    log:
        paths.run_log,
    wildcard_constraints:
        family="quantum_heads",
    params:
        overrides=study.train_overrides,
        **launch_params(mpi=False),
    group:
        "heads"
    threads: per_wildcard_threads(study.experiment_spec)
    resources:
        **per_wildcard_resources(study.experiment_spec),
    shell:
        commands.launched(TRAIN)
