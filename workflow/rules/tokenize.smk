# Token shards for sequence-classification fine-tuning (QuanTA / LoRA), once per (GLUE task, model).


rule tokenize:
    input:
        staged(GLUE),
    output:
        directory(TOKENS_PATTERN),
    log:
        f"{LOGS}/tokenize/{{task}}/{{model}}.log",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
    threads: job_threads(config["tokenize"])
    resources:
        **job_resources(config["tokenize"]),
    shell:
        hpcq() + " tokenize --task {wildcards.task} --model {params.model:q} --out-dir {output:q} > {log:q} 2>&1"
