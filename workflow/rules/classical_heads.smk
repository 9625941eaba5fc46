# Classical baselines (logistic regression, SVC, MLPs) over the same embeddings: the quantum-head rule
# for another family of runs (model.kind in the run config tells hpcq which head).


use rule quantum_heads as classical_heads with:
    wildcard_constraints:
        family="classical_heads",
