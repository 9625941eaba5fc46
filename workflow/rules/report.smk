# One self-contained HTML page (plus Markdown) with the study's tables and plots.


if config["report"]:

    localrules:
        report,

    rule report:
        input:
            rules.aggregate.output,
            rules.energy.output if "energy" in config else [],
        output:
            directory(paths.report),
        log:
            paths.log("report"),
        params:
            results=lambda wildcards, output: Path(output[0]).parent,
        shell:
            commands.hpcq("report {params.results:q} --out {output:q} > {log:q} 2>&1")
