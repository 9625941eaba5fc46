# GLUE token shards for sequence-classification fine-tuning, once per (task, model, max_length) that the
# study's glue runs read. params.data: the task's staged files' checksum, so that changed files are tokenized
# again (see embed.smk).

from hpcq.data.fingerprint import staged_checksum

tokenized_from, tokenize_arguments = prepared_by(TOKENS_PATTERN)


rule tokenize:
    input:
        tokenized_from,
    output:
        directory(TOKENS_PATTERN),
    log:
        f"{LOGS}/tokenize/{{task}}/{{model}}/L{{max_length}}.log",
    wildcard_constraints:
        model="[^/]+",
    params:
        arguments=tokenize_arguments,
        data=lambda wildcards: staged_checksum(f"{GLUE}/{wildcards.task}", DATA_ROOT, DATA_SOURCE),
    threads: job_threads(config["tokenize"])
    resources:
        **job_resources(config["tokenize"]),
    shell:
        hpcq() + " tokenize {params.arguments} --out-dir {output:q} > {log:q} 2>&1"
