"""The top of the analysis, above `results` and `energy`: the energy crossover report (`hpcq energy`: the
model evaluated with the measurements that qualifying bench_scale runs carry) and the study report (`hpcq
report`: one self-contained HTML page plus Markdown of the aggregated runs, statistics and the energy model).
"""
