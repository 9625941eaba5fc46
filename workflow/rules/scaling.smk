# `hpcq bench scale`: one state vector split across MPI ranks (and nodes); one job runs max(ranks) ranks
# and times every rank count of the entry. Entries of one rank run without a launcher.

for mpi in (False, True):

    rule:
        name:
            "scaling_mpi" if mpi else "scaling"
        output:
            SCALING_PATTERN,
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
            " --out {output:q} > {log:q} 2>&1"
