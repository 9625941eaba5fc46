# Sentence embeddings into HDF5 shards, once per (data set, model); every head run reads them.


rule embed:
    input:
        lambda wildcards: staged(EMBEDDING_SOURCES[wildcards.dataset]),
    output:
        directory(EMBEDDINGS_PATTERN),
    log:
        f"{LOGS}/embed/{{dataset}}/{{model}}.log",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
    threads: job_threads(config["embed"], tasks=config["embed"]["ranks"])
    resources:
        **job_resources(config["embed"], tasks=config["embed"]["ranks"]),
    shell:
        hpcq(mpi=config["embed"]["ranks"] > 1)
        + " embed --dataset {wildcards.dataset} --model {params.model:q} --out-dir {output:q} > {log:q} 2>&1"
