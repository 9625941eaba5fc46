# `hpcq bench scale`: one state vector split across MPI ranks (and nodes); one job runs max(ranks) ranks
# and times every rank count of the entry. Entries of one rank run without a launcher. It writes a summary
# NAME.h5 and one file per (qubits, ranks) run into the folder NAME/ (both outputs, so that a failed job's
# partial folder is removed like its summary).

for mpi in (False, True):

    rule:
        name:
            "scaling_mpi" if mpi else "scaling"
        output:
            summary=SCALING_PATTERN,
            runs=directory(SCALING_RUNS_PATTERN),
        log:
            f"{LOGS}/scaling/{{name}}.log",
        wildcard_constraints:
            name=scaling_names(mpi),
        params:
            qubits=lambda wildcards: scaling_spec(wildcards)["qubits"],
            ranks=lambda wildcards: ",".join(map(str, scaling_spec(wildcards)["ranks"])),
            backend=lambda wildcards: scaling_spec(wildcards)["backend"],
        threads: per_wildcard_threads(scaling_spec, scaling_tasks if mpi else None)
        resources:
            **per_wildcard_resources(scaling_spec, tasks_of=scaling_tasks if mpi else None, nodes=True),
        shell:
            hpcq(mpi)
            + " bench scale --qubits {params.qubits} --ranks {params.ranks} --backend {params.backend}"
            " --out {output.summary:q} > {log:q} 2>&1"
