# The GPU-vs-QPU energy model. With scaling runs in the study, the GPU side is fitted from their measured
# time and energy per gate pass; without, from hpcq's roofline.

import shlex


if "energy" in config:

    localrules:
        energy,

    rule energy:
        input:
            study.scaling_outputs(),
        output:
            directory(paths.energy),
        log:
            paths.log("energy"),
        params:
            config=(
                f"--config {shlex.quote(config['energy']['config'])}" if config["energy"]["config"] else ""
            ),
            # The scaling runs' folder, when the study has any.
            results=lambda wildcards, input: (
                f"--results {shlex.quote(str(Path(input[0]).parent))}" if input else ""
            ),
        shell:
            commands.hpcq("energy {params.config} {params.results} --out {output:q} > {log:q} 2>&1")
