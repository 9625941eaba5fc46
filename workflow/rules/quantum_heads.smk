# Quantum heads over frozen embeddings: many small runs, packed into group jobs (profile group-components).


rule quantum_heads:
    input:
        unpack(train_inputs),
    output:
        RUN_PATTERN,
    log:
        RUN_LOG_PATTERN,
    wildcard_constraints:
        family="quantum_heads",
    params:
        overrides=train_overrides,
    group:
        "heads"
    threads: per_wildcard_threads(experiment_spec)
    resources:
        **per_wildcard_resources(experiment_spec),
    shell:
        train_command()
