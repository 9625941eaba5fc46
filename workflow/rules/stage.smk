# Stage data sets on the login node: compute nodes usually cannot reach the source (or the internet).


if DATA_SOURCE:

    localrules:
        stage,

    rule stage:
        output:
            directory(STAGED_PATTERN),
        log:
            f"{LOGS}/stage/{{dataset}}.log",
        wildcard_constraints:
            dataset="|".join(map(re.escape, DATA["datasets"])),
        params:
            source=lambda wildcards: f"{DATA_SOURCE}/{wildcards.dataset}",
        shell:
            hpcq() + " stage --source {params.source:q} --dest {output:q} > {log:q} 2>&1"
