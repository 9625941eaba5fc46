/*
 * Kernels for one (T, VEC, PREC, NV, SUFFIX) instantiation; included by real_gates.c, which defines
 * those macros first. A row is NV vectors (W = NV * VL lanes, one per sample). Exported: hpcq_forward_<SUFFIX>,
 * hpcq_backward_<SUFFIX> and, once per precision, hpcq_angles_<PREC>; everything else is static.
 */
#define VL ((int)(VBYTES / sizeof(T)))
#define ROW(x, i) ((x) + (size_t)(i) * NV)

/* ---- forward gates on a tile of `rows` rows ---- */

static void FN(ry)(VEC *restrict x, size_t rows, int t, const VEC *c, const VEC *s) {
    const size_t tb = (size_t)1 << t;
    LOOP1(rows, t, i, {
        VEC *a = ROW(x, i), *b = ROW(x, i | tb);
        for (int v = 0; v < NV; v++) {
            const VEC a0 = a[v], a1 = b[v];
            a[v] = c[v] * a0 - s[v] * a1;
            b[v] = s[v] * a0 + c[v] * a1;
        }
    });
}

/* CNOT(cq -> tq) then RY on tq: one pass; the control-1 half swaps before rotating */
static void FN(cnot_ry)(VEC *restrict x, size_t rows, int cq, int tq, const VEC *c, const VEC *s) {
    const size_t cb = (size_t)1 << cq, tb = (size_t)1 << tq;
    LOOP2(rows, cq, tq, i, {
        VEC *p0 = ROW(x, i), *p1 = ROW(x, i | tb), *q0 = ROW(x, i | cb), *q1 = ROW(x, i | cb | tb);
        for (int v = 0; v < NV; v++) {
            const VEC a0 = p0[v], a1 = p1[v], b0 = q1[v], b1 = q0[v];
            p0[v] = c[v] * a0 - s[v] * a1;
            p1[v] = s[v] * a0 + c[v] * a1;
            q0[v] = c[v] * b0 - s[v] * b1;
            q1[v] = s[v] * b0 + c[v] * b1;
        }
    });
}

static void FN(cnot)(VEC *restrict x, size_t rows, int cq, int tq) {
    const size_t cb = (size_t)1 << cq, tb = (size_t)1 << tq;
    LOOP2(rows, cq, tq, i, {
        VEC *q0 = ROW(x, i | cb), *q1 = ROW(x, i | cb | tb);
        for (int v = 0; v < NV; v++) {
            const VEC t0 = q0[v];
            q0[v] = q1[v];
            q1[v] = t0;
        }
    });
}

static void FN(cz)(VEC *restrict x, size_t rows, int qa, int qb) {
    const size_t both = ((size_t)1 << qa) | ((size_t)1 << qb);
    LOOP2(rows, qa, qb, i, {
        VEC *q = ROW(x, i | both);
        for (int v = 0; v < NV; v++) q[v] = -q[v];
    });
}

static void FN(xg)(VEC *restrict x, size_t rows, int t) {
    const size_t tb = (size_t)1 << t;
    LOOP1(rows, t, i, {
        VEC *a = ROW(x, i), *b = ROW(x, i | tb);
        for (int v = 0; v < NV; v++) {
            const VEC t0 = a[v];
            a[v] = b[v];
            b[v] = t0;
        }
    });
}

static void FN(zg)(VEC *restrict x, size_t rows, int t) {
    const size_t tb = (size_t)1 << t;
    LOOP1(rows, t, i, {
        VEC *b = ROW(x, i | tb);
        for (int v = 0; v < NV; v++) b[v] = -b[v];
    });
}

static void FN(hg)(VEC *restrict x, size_t rows, int t) {
    const size_t tb = (size_t)1 << t;
    const T r = (T)0.70710678118654752440;
    LOOP1(rows, t, i, {
        VEC *a = ROW(x, i), *b = ROW(x, i | tb);
        for (int v = 0; v < NV; v++) {
            const VEC a0 = a[v], a1 = b[v];
            a[v] = r * (a0 + a1);
            b[v] = r * (a0 - a1);
        }
    });
}

/* ---- adjoint steps: gradient at the gate's output, then un-apply to psi and lambda ---- */

/* one rotation pair (rows y0, y1 of psi and l0, l1 of lambda), written back to (o0, o1): swapped when the
 * forward gate swapped (CNOT control set) */
#define RY_ADJOINT_PAIR(yp0, yp1, yl0, yl1, op0, op1, ol0, ol1)                             \
    for (int v = 0; v < NV; v++) {                                                           \
        const VEC y0 = yp0[v], y1 = yp1[v], l0 = yl0[v], l1 = yl1[v];                        \
        acc[v] += l1 * y0 - l0 * y1;                                                         \
        op0[v] = c[v] * y0 + s[v] * y1;                                                      \
        op1[v] = c[v] * y1 - s[v] * y0;                                                      \
        ol0[v] = c[v] * l0 + s[v] * l1;                                                      \
        ol1[v] = c[v] * l1 - s[v] * l0;                                                      \
    }

static void FN(ry_adjoint)(VEC *restrict xp, VEC *restrict xl, size_t rows, int t, const VEC *c, const VEC *s,
                           VEC *acc) {
    const size_t tb = (size_t)1 << t;
    LOOP1(rows, t, i, {
        VEC *p0 = ROW(xp, i), *p1 = ROW(xp, i | tb), *l0_ = ROW(xl, i), *l1_ = ROW(xl, i | tb);
        RY_ADJOINT_PAIR(p0, p1, l0_, l1_, p0, p1, l0_, l1_)
    });
}

static void FN(cnot_ry_adjoint)(VEC *restrict xp, VEC *restrict xl, size_t rows, int cq, int tq, const VEC *c,
                                const VEC *s, VEC *acc) {
    const size_t cb = (size_t)1 << cq, tb = (size_t)1 << tq;
    LOOP2(rows, cq, tq, i, {
        VEC *p0 = ROW(xp, i), *p1 = ROW(xp, i | tb), *l0_ = ROW(xl, i), *l1_ = ROW(xl, i | tb);
        RY_ADJOINT_PAIR(p0, p1, l0_, l1_, p0, p1, l0_, l1_)
        VEC *q0 = ROW(xp, i | cb), *q1 = ROW(xp, i | cb | tb), *m0 = ROW(xl, i | cb), *m1 = ROW(xl, i | cb | tb);
        RY_ADJOINT_PAIR(q0, q1, m0, m1, q1, q0, m1, m0)
    });
}

/* ---- a stage's gates on one tile ---- */

static void FN(load_angles)(VEC *c, VEC *s, const T *cs, const T *sn, int p, size_t stride, size_t lane0) {
    for (int v = 0; v < NV; v++) {
        c[v] = *(const VEC *)(cs + (size_t)p * stride + lane0 + (size_t)v * VL);
        s[v] = *(const VEC *)(sn + (size_t)p * stride + lane0 + (size_t)v * VL);
    }
}

static void FN(apply_fixed)(VEC *x, size_t rows, int op, int a, int b) {
    switch (op) {
    case OP_CNOT: FN(cnot)(x, rows, a, b); break;
    case OP_CZ: FN(cz)(x, rows, a, b); break;
    case OP_X: FN(xg)(x, rows, a); break;
    case OP_Z: FN(zg)(x, rows, a); break;
    case OP_H: FN(hg)(x, rows, a); break;
    default: break;
    }
}

static void FN(tile_forward)(VEC *x, int k, const int32_t *gates, int g0, int g1, const T *cs, const T *sn,
                             size_t stride, size_t lane0) {
    const size_t rows = (size_t)1 << k;
    VEC c[NV], s[NV];
    for (int g = g0; g < g1; g++) {
        const int32_t *gt = gates + 4 * (size_t)g;
        const int op = gt[0], a = gt[1], b = gt[2], p = gt[3];
        if (op == OP_RY || op == OP_CNOT_RY) FN(load_angles)(c, s, cs, sn, p, stride, lane0);
        if (op == OP_RY) FN(ry)(x, rows, a, c, s);
        else if (op == OP_CNOT_RY) FN(cnot_ry)(x, rows, a, b, c, s);
        else FN(apply_fixed)(x, rows, op, a, b);
    }
}

/* gate order reversed; `grad` is this thread's [n_params][stride] accumulator */
static void FN(tile_backward)(VEC *xp, VEC *xl, int k, const int32_t *gates, int g0, int g1, const T *cs,
                              const T *sn, size_t stride, size_t lane0, double *grad) {
    const size_t rows = (size_t)1 << k;
    VEC c[NV], s[NV], acc[NV];
    for (int g = g1 - 1; g >= g0; g--) {
        const int32_t *gt = gates + 4 * (size_t)g;
        const int op = gt[0], a = gt[1], b = gt[2], p = gt[3];
        if (op == OP_RY || op == OP_CNOT_RY) {
            FN(load_angles)(c, s, cs, sn, p, stride, lane0);
            for (int v = 0; v < NV; v++) acc[v] = (VEC){0};
            if (op == OP_RY) FN(ry_adjoint)(xp, xl, rows, a, c, s, acc);
            else FN(cnot_ry_adjoint)(xp, xl, rows, a, b, c, s, acc);
            double *out = grad + (size_t)p * stride + lane0;
            for (int v = 0; v < NV; v++)
                for (int l = 0; l < VL; l++) out[v * VL + l] += 0.5 * (double)acc[v][l];
        } else {
            FN(apply_fixed)(xp, rows, op, a, b);
            FN(apply_fixed)(xl, rows, op, a, b);
        }
    }
}

static void FN(gather)(VEC *restrict buf, const VEC *restrict src, const size_t *off, size_t rows) {
    for (size_t j = 0; j < rows; j++)
        for (int v = 0; v < NV; v++) buf[j * NV + v] = src[off[j] * NV + v];
}

static void FN(scatter)(VEC *restrict dst, const VEC *restrict buf, const size_t *off, size_t rows) {
    for (size_t j = 0; j < rows; j++)
        for (int v = 0; v < NV; v++) dst[off[j] * NV + v] = buf[j * NV + v];
}

/* ---- observables: (Pψ)[j] = phase · (−1)^popcount((j ^ F) & M) · ψ[j ^ F], F = X|Y bits, M = Z|Y bits,
 * phase = ±1 (real for an even number of Y; the caller passes phase 0 for an odd number: <P> = 0) ---- */

#define MEASURE_BLOCK 256

/* Σ_j ψ[j] (P_i ψ)[j] over rows [r0, r1) of one chunk, added to values[i][lane0 + lane] in double precision */
static void FN(measure_rows)(const VEC *psi, size_t r0, size_t r1, int n_obs, const int64_t *obs, double *values,
                             size_t stride, size_t lane0) {
    for (int i = 0; i < n_obs; i++) {
        const uint64_t F = (uint64_t)obs[3 * i], M = (uint64_t)obs[3 * i + 1];
        const double phase = (double)obs[3 * i + 2];
        if (phase == 0) continue;
        for (size_t b = r0; b < r1; b += MEASURE_BLOCK) {
            const size_t e = b + MEASURE_BLOCK < r1 ? b + MEASURE_BLOCK : r1;
            VEC acc[NV];
            for (int v = 0; v < NV; v++) acc[v] = (VEC){0};
            for (size_t j = b; j < e; j++) {
                const T sign = (__builtin_popcountll((j ^ F) & M) & 1) ? (T)-1 : (T)1;
                const VEC *a = ROW(psi, j), *src = ROW(psi, j ^ F);
                for (int v = 0; v < NV; v++) acc[v] += sign * (a[v] * src[v]);
            }
            double *out = values + (size_t)i * stride + lane0;
            for (int v = 0; v < NV; v++)
                for (int l = 0; l < VL; l++) out[v * VL + l] += phase * (double)acc[v][l];
        }
    }
}

/* the adjoint seed λ[j] = Σ_i g_i (P_i ψ)[j] on rows [r0, r1) of one chunk; g ([n_obs][stride]) already
 * carries the factor 2 · phase_i */
static void FN(seed_rows)(const VEC *psi, VEC *lam, size_t r0, size_t r1, int n_obs, const int64_t *obs,
                          const T *g, size_t stride, size_t lane0) {
    for (size_t j = r0; j < r1; j++) {
        VEC l[NV];
        for (int v = 0; v < NV; v++) l[v] = (VEC){0};
        for (int i = 0; i < n_obs; i++) {
            const uint64_t F = (uint64_t)obs[3 * i], M = (uint64_t)obs[3 * i + 1];
            const T sign = (__builtin_popcountll((j ^ F) & M) & 1) ? (T)-1 : (T)1;
            const VEC *src = ROW(psi, j ^ F), *gi = (const VEC *)(g + (size_t)i * stride + lane0);
            for (int v = 0; v < NV; v++) l[v] += sign * (gi[v] * src[v]);
        }
        VEC *out = ROW(lam, j);
        for (int v = 0; v < NV; v++) out[v] = l[v];
    }
}

/* ---- one call: every stage, tile by tile ---- */

/* what every tile of a call shares */
typedef struct {
    int n, n_chunks, n_stages, n_obs;
    const int32_t *stages, *stage_qubits, *gates;
    T *psi, *lam; /* lam is NULL in the forward pass */
    const T *cs, *sn;
    const int64_t *obs;
    const T *g; /* backward: the scaled upstream gradient of each observable, [n_obs][stride] */
    size_t W, stride, chunk_vectors;
    int batch;
    const T *psi0; /* forward: initial states [batch][2**n], or NULL for |0...0> */
    T *grad_psi0;  /* backward: where dL/dψ0 goes ([batch][2**n]), or NULL */
} FN(job_t);

/* what one thread owns: tile buffers, the current stage's row offsets, and where it adds expectation
 * values (forward) or dL/dθ (backward): the shared output when it owns whole chunks, else its own copy */
typedef struct {
    VEC *bp, *bl;
    size_t *off;
    double *out, *own;
    int32_t comp[64];
    int stage, m, in_place;
} FN(worker_t);

static void FN(enter_stage)(const FN(job_t) *job, FN(worker_t) *w, int i) {
    const int st = job->lam ? job->n_stages - 1 - i : i;
    const int k = job->stages[4 * st];
    const int32_t *S = job->stage_qubits + job->stages[4 * st + 1];
    w->stage = st;
    w->m = complement(w->comp, S, k, job->n);
    w->in_place = is_prefix(S, k);
    tile_offsets(w->off, S, k);
}

/* one tile of the worker's current stage: gather (unless in place), run the stage's gates, scatter */
static void FN(run_tile)(const FN(job_t) *job, FN(worker_t) *w, size_t chunk, size_t tile) {
    const int st = w->stage, k = job->stages[4 * st], g0 = job->stages[4 * st + 2], g1 = job->stages[4 * st + 3];
    const size_t rows = (size_t)1 << k, base = deposit_bits(tile, w->comp, w->m), lane0 = chunk * job->W;
    VEC *cp = (VEC *)job->psi + chunk * job->chunk_vectors + base * NV;
    VEC *cl = job->lam ? (VEC *)job->lam + chunk * job->chunk_vectors + base * NV : NULL;
    VEC *xp = w->in_place ? cp : w->bp, *xl = w->in_place ? cl : w->bl;
    if (!w->in_place) {
        FN(gather)(xp, cp, w->off, rows);
        if (cl) FN(gather)(xl, cl, w->off, rows);
    }
    if (cl) FN(tile_backward)(xp, xl, k, job->gates, g0, g1, job->cs, job->sn, job->stride, lane0, w->out);
    else FN(tile_forward)(xp, k, job->gates, g0, g1, job->cs, job->sn, job->stride, lane0);
    if (!w->in_place) {
        FN(scatter)(cp, xp, w->off, rows);
        if (cl) FN(scatter)(cl, xl, w->off, rows);
    }
}

/* the state of samples chunk*W .. chunk*W + W - 1 on rows [r0, r1): psi0 ([batch][2**n], row-major) where
 * given (zero in lanes past the batch), else |0...0> */
static void FN(load_rows)(const FN(job_t) *job, size_t chunk, size_t r0, size_t r1) {
    T *state = job->psi + chunk * job->chunk_vectors * VL;
    const size_t W = job->W, dim = (size_t)1 << job->n;
    for (size_t l = 0; l < W; l++) {
        const size_t b = chunk * W + l;
        const T *src = job->psi0 && b < (size_t)job->batch ? job->psi0 + b * dim : NULL;
        for (size_t j = r0; j < r1; j++) state[j * W + l] = src ? src[j] : (T)(j == 0 && !job->psi0);
    }
}

/* λ of the chunk's real samples on rows [r0, r1) into grad_psi0 ([batch][2**n]): dL/dψ0 */
static void FN(store_rows)(const FN(job_t) *job, size_t chunk, size_t r0, size_t r1) {
    const T *lam = job->lam + chunk * job->chunk_vectors * VL;
    const size_t W = job->W, dim = (size_t)1 << job->n;
    for (size_t l = 0; l < W && chunk * W + l < (size_t)job->batch; l++) {
        T *dst = job->grad_psi0 + (chunk * W + l) * dim;
        for (size_t j = r0; j < r1; j++) dst[j] = lam[j * W + l];
    }
}

/* the row-wise work before the stages (load ψ0 / seed λ) or after them (measure / store dL/dψ0) */
static void FN(run_rows)(const FN(job_t) *job, FN(worker_t) *w, size_t chunk, size_t r0, size_t r1, int after) {
    const VEC *cp = (const VEC *)job->psi + chunk * job->chunk_vectors;
    if (!job->lam && !after) FN(load_rows)(job, chunk, r0, r1);
    else if (!job->lam) FN(measure_rows)(cp, r0, r1, job->n_obs, job->obs, w->out, job->stride, chunk * job->W);
    else if (!after)
        FN(seed_rows)(cp, (VEC *)job->lam + chunk * job->chunk_vectors, r0, r1, job->n_obs, job->obs, job->g,
                      job->stride, chunk * job->W);
    else if (job->grad_psi0) FN(store_rows)(job, chunk, r0, r1);
}

static void FN(free_workers)(FN(worker_t) *workers, int n) {
    for (int t = 0; t < n; t++) {
        free(workers[t].bp);
        free(workers[t].bl);
        free(workers[t].off);
        free(workers[t].own);
    }
    free(workers);
}

/*
 * Forward (lam NULL): run every stage over psi ([n_chunks][2**n][W]), then add <P_i> into out[n_obs][stride].
 * Backward: seed lam from psi and g, run the stages in reverse un-applying every gate to psi and lam, and add
 * dL/dθ into out[n_params][stride]. cs/sn are [n_params][stride], stride = n_chunks * W. out is zeroed by
 * the caller. Threads take whole chunks when there are enough of them: no synchronisation but the final
 * join (on a busy machine every barrier can cost a scheduler time slice); else they share each stage's
 * tiles. Returns 0, or -1 if memory ran out.
 */
static int FN(run)(FN(job_t) job, int n_out, double *out, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    const size_t out_size = (size_t)n_out * job.stride, dim = (size_t)1 << job.n;
    int kmax = 0;
    for (int st = 0; st < job.n_stages; st++) kmax = job.stages[4 * st] > kmax ? job.stages[4 * st] : kmax;
    /* aligned_alloc wants a multiple of the alignment */
    const size_t tile_bytes = ((((size_t)1 << kmax) * NV * sizeof(VEC)) + 63) / 64 * 64;
    const int by_chunk = job.n_chunks >= n_threads;
    FN(worker_t) *workers = calloc((size_t)n_threads, sizeof(FN(worker_t)));
    int failed = workers == NULL;
    for (int t = 0; !failed && t < n_threads; t++) {
        FN(worker_t) *w = &workers[t];
        w->bp = aligned_alloc(64, tile_bytes);
        w->bl = job.lam ? aligned_alloc(64, tile_bytes) : NULL;
        w->off = malloc(((size_t)1 << kmax) * sizeof(size_t));
        w->own = by_chunk ? NULL : calloc(out_size + 1, sizeof(double));
        w->out = by_chunk ? out : w->own;
        failed = !w->bp || !w->off || (job.lam && !w->bl) || (!by_chunk && !w->own);
    }
    if (failed) {
        if (workers) FN(free_workers)(workers, n_threads);
        return -1;
    }
    const size_t row_block = dim < 4096 ? dim : 4096, row_blocks = dim / row_block;
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        FN(worker_t) *w = &workers[omp_get_thread_num()];
#else
        FN(worker_t) *w = &workers[0];
#endif
        if (by_chunk) {
#pragma omp for schedule(dynamic, 1)
            for (int chunk = 0; chunk < job.n_chunks; chunk++) {
                FN(run_rows)(&job, w, chunk, 0, dim, 0);
                for (int i = 0; i < job.n_stages; i++) {
                    FN(enter_stage)(&job, w, i);
                    for (size_t tile = 0; tile < ((size_t)1 << w->m); tile++) FN(run_tile)(&job, w, chunk, tile);
                }
                FN(run_rows)(&job, w, chunk, 0, dim, 1);
            }
        } else {
            const size_t row_items = row_blocks * (size_t)job.n_chunks;
#pragma omp for schedule(dynamic, 1)
            for (size_t it = 0; it < row_items; it++)
                FN(run_rows)(&job, w, it % job.n_chunks, (it / job.n_chunks) * row_block,
                             (it / job.n_chunks + 1) * row_block, 0);
            for (int i = 0; i < job.n_stages; i++) {
                FN(enter_stage)(&job, w, i);
                const size_t items = ((size_t)1 << w->m) * (size_t)job.n_chunks;
#pragma omp for schedule(dynamic, 1)
                for (size_t it = 0; it < items; it++) FN(run_tile)(&job, w, it % job.n_chunks, it / job.n_chunks);
            }
#pragma omp for schedule(dynamic, 1) nowait
            for (size_t it = 0; it < row_items; it++)
                FN(run_rows)(&job, w, it % job.n_chunks, (it / job.n_chunks) * row_block,
                             (it / job.n_chunks + 1) * row_block, 1);
#pragma omp critical
            for (size_t j = 0; j < out_size; j++) out[j] += w->own[j];
        }
    }
    FN(free_workers)(workers, n_threads);
    return 0;
}

#if NV == 1
/* cos(θ/2) and sin(θ/2) of every rotation r and lane b < padded: θ = weights[index], features[b][index] or
 * values[r] by source[r] = (kind 0/1/2, index); lanes past the batch get θ = 0. Once per precision. */
void CAT(hpcq_angles, PREC)(int n_rot, const int32_t *source, const T *values, const T *weights, const T *features,
                     int n_features, int batch, int padded, T *cs, T *sn) {
    for (int r = 0; r < n_rot; r++) {
        const int kind = source[2 * r], index = source[2 * r + 1];
        for (int b = 0; b < padded; b++) {
            T theta = 0;
            if (b < batch) theta = kind == 0 ? weights[index] : kind == 1 ? features[(size_t)b * n_features + index]
                                                                          : values[r];
            cs[(size_t)r * padded + b] = (T)cos((double)theta / 2);
            sn[(size_t)r * padded + b] = (T)sin((double)theta / 2);
        }
    }
}
#endif

int FN(hpcq_forward)(int n, int n_stages, const int32_t *stages, const int32_t *stage_qubits, const int32_t *gates,
                     const T *psi0, int batch, T *psi, int n_chunks, const T *cs, const T *sn, int n_obs,
                     const int64_t *obs, double *values, int n_threads) {
    const FN(job_t) job = {n, n_chunks, n_stages, n_obs, stages, stage_qubits, gates, psi, NULL, cs, sn, obs, NULL,
                           (size_t)NV * VL, (size_t)n_chunks * NV * VL, ((size_t)1 << n) * NV, batch, psi0, NULL};
    return FN(run)(job, n_obs, values, n_threads);
}

int FN(hpcq_backward)(int n, int n_stages, const int32_t *stages, const int32_t *stage_qubits, const int32_t *gates,
                      T *psi, T *lam, T *grad_psi0, int batch, int n_chunks, const T *cs, const T *sn, int n_obs,
                      const int64_t *obs, const T *g, int n_params, double *grad, int n_threads) {
    const FN(job_t) job = {n, n_chunks, n_stages, n_obs, stages, stage_qubits, gates, psi, lam, cs, sn, obs, g,
                           (size_t)NV * VL, (size_t)n_chunks * NV * VL, ((size_t)1 << n) * NV, batch, NULL,
                           grad_psi0};
    return FN(run)(job, n_params, grad, n_threads);
}

#undef VL
#undef ROW
#undef RY_ADJOINT_PAIR
#undef MEASURE_BLOCK
#undef NV
#undef SUFFIX
