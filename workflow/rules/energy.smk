# The GPU-vs-QPU energy model. With scaling runs in the study, the GPU side is fitted from their measured
# time and energy per gate pass; without, from hpcq's roofline.


if "energy" in config:

    localrules:
        energy,

    rule energy:
        input:
            scaling_outputs(),
        output:
            directory(f"{RESULTS}/energy"),
        log:
            f"{LOGS}/energy.log",
        params:
            config=f"--config {shlex.quote(config['energy']['config'])}" if config["energy"]["config"] else "",
            results=lambda wildcards, input: f"--results {shlex.quote(str(Path(input[0]).parent))}" if input else "",
        shell:
            hpcq() + " energy {params.config} {params.results} --out {output:q} > {log:q} 2>&1"
