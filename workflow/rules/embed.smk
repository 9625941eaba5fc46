# Sentence embeddings into HDF5 shards, once per (data set, model) that the study's head runs read.
# params.data is the staged data set's content checksum: when its files change, even in place, Snakemake's
# params trigger re-embeds (and so retrains the runs that read the shards) instead of keeping stale shards.

from hpcq.data.fingerprint import staged_checksum

embedded_from, embed_arguments = study.prepared_by(paths.embeddings)


rule embed:
    input:
        embedded_from,
    output:
        directory(paths.embeddings),
    log:
        paths.log("embed/{dataset}/{model}"),
    wildcard_constraints:
        model="[^/]+",
    params:
        arguments=embed_arguments,
        data=lambda wildcards: staged_checksum(wildcards.dataset, paths.data_root, paths.data_source),
        shard_size=f"--shard-size {config['embed']['shard_size']}" if config["embed"]["shard_size"] else "",
        **launch_params(mpi=config["embed"]["ranks"] > 1),
    threads: job_threads(config["embed"], tasks=config["embed"]["ranks"])
    resources:
        **job_resources(config["embed"], tasks=config["embed"]["ranks"]),
    shell:
        commands.launched("embed {params.arguments} {params.shard_size} --out-dir {output:q} > {log:q} 2>&1")
