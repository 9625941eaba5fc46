# Every run's HDF5 into one tidy table. Light work: it runs on the login node.


localrules:
    aggregate,


rule aggregate:
    input:
        study.runs(),
    output:
        directory(paths.aggregate),
    log:
        paths.log("aggregate"),
    params:
        # results/<study>/runs next to results/<study>/aggregate, derived so remote storage can map it.
        runs=lambda wildcards, output: Path(output[0]).parent / "runs",
    shell:
        commands.hpcq("aggregate {params.runs:q} --out {output:q} > {log:q} 2>&1")
