# Stage data sets on the login node: compute nodes usually cannot reach the source (or the internet).
# hpcq verifies every file's sha256 and renames each copy into place, so a staged file is whole.
# params.source_checksum is the source copy's content checksum: a source changed after staging is staged again
# (and so re-embedded and retrained) instead of the jobs reading the old copy.

from hpcq.data.fingerprint import staged_checksum
from hpcq.study.study import names_matching


if paths.data_source:

    localrules:
        stage,

    rule stage:
        output:
            directory(paths.staged),
        log:
            paths.log("stage/{dataset}"),
        wildcard_constraints:
            dataset=names_matching(config["data"]["datasets"]),
        params:
            source=paths.data_source,
            source_checksum=lambda wildcards: staged_checksum(wildcards.dataset, paths.data_source, None),
            root=lambda wildcards, output: Path(output[0]).parent,
        shell:
            commands.hpcq(
                "stage --source {params.source:q} --dest {params.root:q} --dataset {wildcards.dataset}"
                " > {log:q} 2>&1"
            )
