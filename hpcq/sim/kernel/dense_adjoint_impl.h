/*
 * The adjoint pass of fused blocks applied in place (dense_impl.h) to ONE state vector: included by
 * dense_impl.h once per precision; exported as hpcq_dense_adjoint_<PREC>.
 *
 * The backward pass of the adjoint method walks the blocks in reverse with the final state ψ and λ = dL/dψ.
 * For a block M it needs ψ before M (ψ_in = M^T ψ: real M is orthogonal), λ before M (M^T λ) and
 * dL/dM[r][c] = Σ λ_out[r] ψ_in[c], summed over every group of 2^k amplitudes that M mixes. Each tile of a
 * block loads ψ and λ once, un-applies M^T to both with the forward's tile code (a coefficient table of
 * M^T) and adds the outer product to a per-thread accumulator.
 *
 * A call takes a *stage*: consecutive blocks (in the order they are un-applied) whose bits, with the lowest
 * bits of a cache line, are few. The state is cut into tiles over those bits; each tile of ψ and λ is copied
 * into a buffer that stays in cache, every block of the stage runs there, and the tile is copied back. So a
 * stage streams ψ and λ through memory once, however many blocks it holds, where block by block the backward
 * would stream two states per block against the forward's one (measured at 24 qubits: 2.9x a forward block).
 *
 * The outer product keeps the forward's vector layout. λ's row vectors are already loaded lane-permuted by
 * each pattern p of lane bits (they are the un-apply's inputs), so acc[h * dl + p][h'] += λ_p[h] · ψ_in[h']
 * pairs, in lane a, λ at (row h, lane a ^ flip_p) with ψ_in at (row h', lane a): one vector multiply-add
 * per (input, output row), 2^k per amplitude like the multiply itself. Lanes are folded into dL/dM once, at
 * the end.
 *
 * Sums: each thread adds into a vector accumulator in T for ADJOINT_FLUSH tiles, then into its own double
 * copy (a float32 lane never sums more than a few dozen products);
 * the copies are added in thread order after the parallel loop, whose static schedule gives every thread
 * the same tiles on every call, so a gradient does not change from one call to the next.
 */
/* tiles between flushes: few enough products per float32 lane to keep them exact to ~1e-6, many enough
 * that the flush's conversions cost a few percent of the tiles' multiply-adds */
#define ADJOINT_FLUSH 16
/* 4096 amplitudes: 16 KiB of float32 per state */
#define STAGE_MIN_BITS 12

/* one tile of the adjoint: ψ and λ of `count` groups loaded, both un-applied by M^T (coef and matrix are
 * M^T's) and stored back, acc[i][h'] += λ input i · ψ_in row h' */
INLINE void DFN(adjoint_tile)(
    VEC *restrict psi, VEC *restrict lam, long long tile, long long run, int nh, const int32_t *row_bits,
    const size_t *off, int dh, int dl, int count, const MASK *masks, const VEC *coef, const T *matrix,
    VEC *restrict acc) {
    const int inputs = dh * dl;
    size_t bases[GROUPS];
    /* ψ's groups, then λ's, in one array: a full tile multiplies all of them at once */
    VEC x[2 * GROUPS << HPCQ_DENSE_MAX_QUBITS], o[2 * GROUPS << HPCQ_DENSE_MAX_QUBITS];
    VEC *xp = x, *xl = x + GROUPS * inputs, *op = o, *ol = o + GROUPS * dh;
    DFN(tile_bases)(bases, tile, run, nh, row_bits, count);
    DFN(tile_load)(xp, psi, bases, off, dh, dl, count, masks);
    DFN(tile_load)(xl, lam, bases, off, dh, dl, count, masks);
    if (count == GROUPS && dl == 1) {
        CAT(CAT(DFN(dense_groups), scalar), BOTH_GROUPS)(o, x, matrix, inputs, dh);
    } else if (count == GROUPS) {
        CAT(CAT(DFN(dense_groups), vector), BOTH_GROUPS)(o, x, coef, inputs, dh);
    } else {
        DFN(tile_multiply)(op, xp, dh, dl, count, coef, matrix);
        DFN(tile_multiply)(ol, xl, dh, dl, count, coef, matrix);
    }
    for (int i = 0; i < inputs; i++)
        for (int h = 0; h < dh; h++) {
            VEC a = acc[i * dh + h];
            for (int g = 0; g < count; g++) a += xl[g * inputs + i] * op[g * dh + h];
            acc[i * dh + h] = a;
        }
    DFN(tile_store)(psi, op, bases, off, dh, count);
    DFN(tile_store)(lam, ol, bases, off, dh, count);
}

/* a thread's vector accumulator into its double sums, then cleared */
static void DFN(adjoint_flush)(VEC *acc, double *sums, int vectors) {
    for (int j = 0; j < vectors; j++) {
        for (int a = 0; a < DVL; a++) sums[(size_t)j * DVL + a] += (double)acc[j][a];
        acc[j] = (VEC){0};
    }
}

/* A state narrower than one vector: scalar gather, un-apply and outer product per group of 2^k amplitudes. */
static void DFN(adjoint_scalar)(int n_bits, T *psi, T *lam, int k, const int32_t *pos, const T *matrix,
                                double *grad) {
    const int d = 1 << k;
    size_t mask = 0, index[1 << HPCQ_DENSE_MAX_QUBITS];
    T p[1 << HPCQ_DENSE_MAX_QUBITS], l[1 << HPCQ_DENSE_MAX_QUBITS], pin[1 << HPCQ_DENSE_MAX_QUBITS];
    for (int j = 0; j < k; j++) mask |= (size_t)1 << pos[j];
    for (size_t base = 0; base < ((size_t)1 << n_bits); base++) {
        if (base & mask) continue;
        for (int h = 0; h < d; h++) {
            index[h] = DFN(group_index)(base, h, k, pos);
            p[h] = psi[index[h]];
            l[h] = lam[index[h]];
        }
        for (int c = 0; c < d; c++) {
            T sp = 0, sl = 0;
            for (int r = 0; r < d; r++) {
                sp += matrix[(size_t)r * d + c] * p[r];
                sl += matrix[(size_t)r * d + c] * l[r];
            }
            pin[c] = sp;
            psi[index[c]] = sp;
            lam[index[c]] = sl;
        }
        for (int r = 0; r < d; r++)
            for (int c = 0; c < d; c++) grad[(size_t)r * d + c] += (double)l[r] * (double)pin[c];
    }
}

/* every tile of one block (plan) over a vector array (a stage tile, or the whole state), adding dL/dM into
 * acc and, every ADJOINT_FLUSH tiles (counted on from earlier calls in since_flush), into sums */
static void DFN(adjoint_block)(const DFN(dense_plan_t) *plan, VEC *restrict vp, VEC *restrict vl,
                               VEC *restrict acc, double *sums, int *since_flush) {
    const int nh = plan->nh, nl = plan->nl, dh = plan->dh, dl = plan->dl, vectors = dh * dl * dh;
    const long long groups = plan->groups, run = plan->run, tiles = (groups + GROUPS - 1) / GROUPS;
    const int32_t *row_bits = plan->row_bits;
    const size_t *off = plan->off;
    const MASK *masks = plan->masks;
    const VEC *coef = plan->coef;
    const T *transposed = plan->matrix;
    for (long long tile = 0; tile < tiles; tile++) {
        const int count = groups - tile * GROUPS < GROUPS ? (int)(groups - tile * GROUPS) : GROUPS;
        /* specialised like the forward's tiles, for the blocks of up to 4 qubits the backends fuse: with
         * runtime widths the adjoint ran 1.5-2.5x slower (2^15-2^18 float32 amplitudes, one thread) */
#define TILE(NH, NL)                                                                                       \
    DFN(adjoint_tile)(vp, vl, tile, run, NH, row_bits, off, 1 << (NH), 1 << (NL), GROUPS, masks, coef,     \
                      transposed, acc)
#define TILE_CASE(NH, NL) case (NH) * 8 + (NL): TILE(NH, NL); break;
        if (count == GROUPS && nh + nl <= 4) {
            switch (nh * 8 + nl) {
            TILE_CASE(1, 0) TILE_CASE(2, 0) TILE_CASE(3, 0) TILE_CASE(4, 0)
            TILE_CASE(0, 1) TILE_CASE(1, 1) TILE_CASE(2, 1) TILE_CASE(3, 1)
            TILE_CASE(0, 2) TILE_CASE(1, 2) TILE_CASE(2, 2)
            TILE_CASE(0, 3) TILE_CASE(1, 3)
            default: TILE(nh, nl);
            }
#undef TILE_CASE
#undef TILE
        } else {
            DFN(adjoint_tile)(vp, vl, tile, run, nh, row_bits, off, dh, dl, count, masks, coef, transposed,
                              acc);
        }
        if (++*since_flush == ADJOINT_FLUSH) {
            DFN(adjoint_flush)(acc, sums, vectors);
            *since_flush = 0;
        }
    }
}

/* a stage tile's runs of `run` consecutive amplitudes (starting at state offsets run_at[]) between the state
 * and a contiguous buffer, either way */
INLINE void DFN(stage_copy)(T *restrict buffer, T *restrict state, const size_t *run_at, size_t runs,
                            size_t run, int to_state) {
    for (size_t r = 0; r < runs; r++) {
        if (to_state) memcpy(state + run_at[r], buffer + r * run, run * sizeof(T));
        else memcpy(buffer + r * run, state + run_at[r], run * sizeof(T));
    }
}

/* the tile bits of a stage: every block's, and the lowest ones, so that tiles are whole cache lines, and at
 * least STAGE_MIN_BITS of them (per-tile work, copies and calls, stays small next to the blocks'); all bits
 * (m = n_bits) when that leaves fewer than four tiles. Returns m, or -2 for a block it does not take (a width
 * outside 1..HPCQ_DENSE_MAX_QUBITS, a position out of range or twice). */
static int DFN(stage_bits)(int32_t *tile_bits, int n_bits, int n_blocks, const int32_t *ks,
                           const int32_t *positions) {
    const int line = __builtin_ctz((unsigned)(64 / sizeof(T)));
    uint64_t used = 0;
    for (int j = 0; j < line && j < n_bits; j++) used |= (uint64_t)1 << j;
    for (int b = 0, at = 0; b < n_blocks; at += ks[b], b++) {
        if (ks[b] < 1 || ks[b] > HPCQ_DENSE_MAX_QUBITS) return -2;
        uint64_t mine = 0; /* this block's bits, which must be distinct */
        for (int j = 0; j < ks[b]; j++) {
            if (positions[at + j] < 0 || positions[at + j] >= n_bits) return -2;
            if ((mine >> positions[at + j]) & 1) return -2;
            mine |= (uint64_t)1 << positions[at + j];
        }
        used |= mine;
    }
    for (int q = 0; q < n_bits && __builtin_popcountll(used) < STAGE_MIN_BITS; q++) used |= (uint64_t)1 << q;
    int m = 0;
    for (int q = 0; q < n_bits; q++)
        if ((used >> q) & 1) tile_bits[m++] = q;
    if (n_bits - m < 2)
        for (m = 0; m < n_bits; m++) tile_bits[m] = m;
    return m;
}

/* what the threads of one stage share */
typedef struct {
    int m, n_outer;
    int32_t tile_bits[64], outer_bits[64];
    DFN(dense_plan_t) *plans;
    size_t *acc_at, *sum_at; /* block b's accumulator and sums start here within a thread's share */
    size_t *run_at, runs, run;
} DFN(stage_t);

static void DFN(stage_free)(DFN(stage_t) *st, int prepared) {
    for (int b = 0; b < prepared; b++) DFN(dense_release)(&st->plans[b], NULL);
    free(st->plans);
    free(st->acc_at);
    free(st->sum_at);
    free(st->run_at);
}

/* the plans of every block on the tile's bits, the accumulator layout and the tile's runs; returns 0, 1 (a
 * state narrower than one vector: the scalar path), -1 or -2 */
static int DFN(stage_prepare)(DFN(stage_t) *st, int n_bits, int n_blocks, const int32_t *ks,
                              const int32_t *positions, const T *matrices) {
    int32_t local[HPCQ_DENSE_MAX_QUBITS], local_bit[64];
    memset(st, 0, sizeof(*st));
    st->m = DFN(stage_bits)(st->tile_bits, n_bits, n_blocks, ks, positions);
    if (st->m < 0) return -2;
    st->n_outer = complement(st->outer_bits, st->tile_bits, st->m, n_bits);
    for (int j = 0; j < st->m; j++) local_bit[st->tile_bits[j]] = j;
    /* aligned like the plans' vector members (calloc promises 16 bytes) */
    st->plans = aligned_alloc(_Alignof(DFN(dense_plan_t)), (size_t)n_blocks * sizeof(DFN(dense_plan_t)));
    st->acc_at = malloc(((size_t)n_blocks + 1) * sizeof(size_t));
    st->sum_at = malloc(((size_t)n_blocks + 1) * sizeof(size_t));
    /* the tile's bits 0..c0-1 are the state's: runs of 2^c0 amplitudes are contiguous in both */
    int c0 = 0;
    while (c0 < st->m && st->tile_bits[c0] == c0) c0++;
    st->run = (size_t)1 << c0;
    st->runs = (size_t)1 << (st->m - c0);
    st->run_at = malloc(st->runs * sizeof(size_t));
    if (!st->plans || !st->acc_at || !st->sum_at || !st->run_at) {
        DFN(stage_free)(st, 0);
        return -1;
    }
    for (size_t r = 0; r < st->runs; r++) st->run_at[r] = deposit_bits(r, st->tile_bits + c0, st->m - c0);
    st->acc_at[0] = st->sum_at[0] = 0;
    const T *matrix = matrices;
    for (int b = 0, at = 0; b < n_blocks; at += ks[b], matrix += (size_t)1 << (2 * ks[b]), b++) {
        for (int j = 0; j < ks[b]; j++) local[j] = local_bit[positions[at + j]];
        const int prepared = DFN(dense_prepare)(&st->plans[b], st->m, ks[b], local, matrix, 1);
        if (prepared != 0) {
            DFN(stage_free)(st, b);
            return prepared;
        }
        const DFN(dense_plan_t) *plan = &st->plans[b];
        const size_t vectors = (size_t)plan->dh * plan->dl * plan->dh;
        /* each block's accumulator on its own 256-byte blocks: threads never write one cache line */
        st->acc_at[b + 1] = st->acc_at[b] + (vectors * sizeof(VEC) + 255) / 256 * 256 / sizeof(VEC);
        st->sum_at[b + 1] = st->sum_at[b] + vectors * DVL;
    }
    return 0;
}

/*
 * psi, lam: 2^n_bits amplitudes each, VBYTES-aligned: the state and dL/dstate after the stage. Block b
 * (b = 0..n_blocks-1, un-applied in that order) acts on ks[b] index bits, positions[] holding
 * all blocks' in turn as for hpcq_dense, its matrix row-major at `matrices` after the earlier blocks' 4^k
 * entries. Un-applies every block from both in place and writes each dL/dM (double, at the same offsets as
 * the matrices) into grads. Returns 0, -1 if memory ran out, -2 for arguments it does not take.
 */
int DFN(hpcq_dense_adjoint)(int n_bits, T *psi, T *lam, int n_blocks, const int32_t *ks,
                            const int32_t *positions, const T *matrices, double *grads, int n_threads) {
    if (n_bits < 0 || n_bits > 62 || n_blocks < 1) return -2;
    DFN(stage_t) st;
    const int prepared = DFN(stage_prepare)(&st, n_bits, n_blocks, ks, positions, matrices);
    if (prepared < 0) return prepared;
    size_t n_entries = 0;
    for (int b = 0; b < n_blocks; b++) n_entries += (size_t)1 << (2 * ks[b]);
    for (size_t j = 0; j < n_entries; j++) grads[j] = 0;
    if (prepared == 1) { /* the whole state is narrower than one vector */
        for (int b = 0, at = 0, e = 0; b < n_blocks; at += ks[b], e += 1 << (2 * ks[b]), b++)
            DFN(adjoint_scalar)(n_bits, psi, lam, ks[b], positions + at, matrices + e, grads + e);
        return 0;
    }
    const int whole = st.m == n_bits;
    if (whole || n_threads < 1) n_threads = 1;
    const size_t tile = (size_t)1 << st.m, acc_size = st.acc_at[n_blocks], sum_size = st.sum_at[n_blocks];
    VEC *accs = aligned_alloc(256, (size_t)n_threads * acc_size * sizeof(VEC));
    double *sums = calloc((size_t)n_threads * sum_size, sizeof(double));
    int *counts = calloc((size_t)n_threads * n_blocks, sizeof(int)); /* tiles since each block's last flush */
    T *buffers = whole ? NULL : aligned_alloc(VBYTES, (size_t)n_threads * 2 * tile * sizeof(T));
    if (!accs || !sums || !counts || (!whole && !buffers)) {
        free(accs);
        free(sums);
        free(counts);
        free(buffers);
        DFN(stage_free)(&st, n_blocks);
        return -1;
    }
    const long long outer = (long long)1 << st.n_outer;
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#else
        const int thread = 0;
#endif
        VEC *acc = accs + (size_t)thread * acc_size;
        double *own = sums + (size_t)thread * sum_size;
        int *count = counts + (size_t)thread * n_blocks;
        for (size_t j = 0; j < acc_size; j++) acc[j] = (VEC){0};
        T *bp = whole ? psi : buffers + (size_t)thread * 2 * tile, *bl = whole ? lam : bp + tile;
#pragma omp for schedule(static)
        for (long long t = 0; t < outer; t++) {
            const size_t base = deposit_bits((size_t)t, st.outer_bits, st.n_outer);
            if (!whole) {
                DFN(stage_copy)(bp, psi + base, st.run_at, st.runs, st.run, 0);
                DFN(stage_copy)(bl, lam + base, st.run_at, st.runs, st.run, 0);
            }
            for (int b = 0; b < n_blocks; b++)
                DFN(adjoint_block)(&st.plans[b], (VEC *)bp, (VEC *)bl, acc + st.acc_at[b],
                                   own + st.sum_at[b], count + b);
            if (!whole) {
                DFN(stage_copy)(bp, psi + base, st.run_at, st.runs, st.run, 1);
                DFN(stage_copy)(bl, lam + base, st.run_at, st.runs, st.run, 1);
            }
        }
        for (int b = 0; b < n_blocks; b++) {
            const int vectors = (int)(st.sum_at[b + 1] - st.sum_at[b]) / DVL;
            DFN(adjoint_flush)(acc + st.acc_at[b], own + st.sum_at[b], vectors);
        }
    }
    for (int t = 1; t < n_threads; t++)
        for (size_t j = 0; j < sum_size; j++) sums[j] += sums[(size_t)t * sum_size + j];
    /* lane a of acc[h * dl + p][h'] is λ at (h, a ^ flip_p) times ψ_in at (h', a) */
    double *grad = grads;
    for (int b = 0, at = 0; b < n_blocks; grad += (size_t)1 << (2 * ks[b]), at += ks[b], b++) {
        const DFN(dense_plan_t) *plan = &st.plans[b];
        const int dh = plan->dh, dl = plan->dl, d = plan->d;
        int32_t local[HPCQ_DENSE_MAX_QUBITS];
        for (int j = 0; j < ks[b]; j++) /* the block's bits within the tile, as its plan saw them */
            for (int i = 0; i < st.m; i++)
                if (st.tile_bits[i] == positions[at + j]) local[j] = i;
        const double *block_sums = sums + st.sum_at[b];
        for (int h = 0; h < dh; h++)
            for (int p = 0; p < dl; p++)
                for (int hp = 0; hp < dh; hp++)
                    for (int a = 0; a < DVL; a++) {
                        const int r = DFN(matrix_index)(h, a ^ plan->flips[p], local, plan->row, plan->nh,
                                                        plan->lane, plan->nl);
                        const int c = DFN(matrix_index)(hp, a, local, plan->row, plan->nh, plan->lane,
                                                        plan->nl);
                        grad[(size_t)r * d + c] += block_sums[((size_t)(h * dl + p) * dh + hp) * DVL + a];
                    }
    }
    free(accs);
    free(sums);
    free(counts);
    free(buffers);
    DFN(stage_free)(&st, n_blocks);
    return 0;
}

#undef ADJOINT_FLUSH
#undef STAGE_MIN_BITS
