# The GPU-vs-QPU energy model, fitted from the study's measured runs (after aggregation).


if "energy" in config:

    localrules:
        energy,

    rule energy:
        input:
            rules.aggregate.output,
        output:
            directory(f"{RESULTS}/energy"),
        log:
            f"{LOGS}/energy.log",
        params:
            config=f"--config {shlex.quote(config['energy']['config'])}" if config["energy"]["config"] else "",
        shell:
            hpcq() + " energy {params.config} --out {output:q} > {log:q} 2>&1"
