# Sentence embeddings into HDF5 shards, once per (data set, model) that the study's head runs read.
# params.data is the staged data set's content checksum: when its files change, even in place, Snakemake's
# params trigger re-embeds (and so retrains the runs that read the shards) instead of keeping stale shards.

from hpcq.data.fingerprint import staged_checksum

embedded_from, embed_arguments = prepared_by(EMBEDDINGS_PATTERN)


rule embed:
    input:
        embedded_from,
    output:
        directory(EMBEDDINGS_PATTERN),
    log:
        f"{LOGS}/embed/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model="[^/]+",
    params:
        arguments=embed_arguments,
        data=lambda wildcards: staged_checksum(wildcards.dataset, DATA_ROOT, DATA_SOURCE),
        shard_size=f"--shard-size {config['embed']['shard_size']}" if config["embed"]["shard_size"] else "",
    threads: job_threads(config["embed"], tasks=config["embed"]["ranks"])
    resources:
        **job_resources(config["embed"], tasks=config["embed"]["ranks"]),
    shell:
        hpcq(mpi=config["embed"]["ranks"] > 1)
        + " embed {params.arguments} {params.shard_size} --out-dir {output:q} > {log:q} 2>&1"
