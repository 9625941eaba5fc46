# GLUE token shards for sequence-classification fine-tuning, once per (task, model, max_length) that the
# study's glue runs read. params.data: the task's staged files' checksum, so that changed files are tokenized
# again (see embed.smk).

from hpcq.data.fingerprint import staged_checksum
from hpcq.study.grid import GLUE

tokenized_from, tokenize_arguments = study.prepared_by(paths.tokens)


rule tokenize:
    input:
        tokenized_from,
    output:
        directory(paths.tokens),
    log:
        paths.log("tokenize/{task}/{model}/L{max_length}"),
    wildcard_constraints:
        model="[^/]+",
    params:
        arguments=tokenize_arguments,
        data=lambda wildcards: staged_checksum(
            f"{GLUE}/{wildcards.task}", paths.data_root, paths.data_source
        ),
    threads: job_threads(config["tokenize"])
    resources:
        **job_resources(config["tokenize"]),
    shell:
        commands.hpcq("tokenize {params.arguments} --out-dir {output:q} > {log:q} 2>&1")
