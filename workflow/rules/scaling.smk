# `hpcq bench scale`: one state vector split across MPI ranks (and nodes); one job runs max(ranks) ranks
# and times every rank count of the entry. Entries of one rank run without a launcher. It writes a summary
# NAME.h5 and one file per (qubits, ranks) run into the folder NAME/ (both outputs, so that a failed job's
# partial folder is removed like its summary).


rule scaling:
    output:
        summary=paths.scaling,
        runs=directory(paths.scaling_runs),
    log:
        paths.log("scaling/{name}"),
    wildcard_constraints:
        name=study.scaling_names(mpi=False),
    params:
        options=study.scaling_options,
        **launch_params(mpi=False),
    threads: per_wildcard_threads(study.scaling_spec)
    resources:
        **per_wildcard_resources(study.scaling_spec, nodes=True),
    shell:
        commands.launched("bench scale {params.options} --out {output.summary:q} > {log:q} 2>&1")


use rule scaling as scaling_mpi with:
    wildcard_constraints:
        name=study.scaling_names(mpi=True),
    params:
        **launch_params(mpi=True),
    threads: per_wildcard_threads(study.scaling_spec, study.scaling_tasks)
    resources:
        **per_wildcard_resources(study.scaling_spec, tasks_of=study.scaling_tasks, nodes=True),
