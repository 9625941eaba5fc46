# Stage data sets on the login node: compute nodes usually cannot reach the source (or the internet).
# hpcq verifies every file's sha256 and renames each copy into place, so a staged file is whole.


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
            source=DATA_SOURCE,
            root=lambda wildcards, output: Path(output[0]).parent,
        shell:
            hpcq() + " stage --source {params.source:q} --dest {params.root:q} --dataset {wildcards.dataset}"
            " > {log:q} 2>&1"
