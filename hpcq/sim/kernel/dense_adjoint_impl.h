/*
 * The adjoint pass of a fused block applied in place (dense_impl.h) to ONE state vector: included by
 * dense_impl.h once per precision; exported as hpcq_dense_adjoint_<PREC>.
 *
 * The backward pass of the adjoint method walks the blocks in reverse with the final state ψ and λ = dL/dψ.
 * For a block M it needs ψ before M (ψ_in = M^T ψ: real M is orthogonal), λ before M (M^T λ) and
 * dL/dM[r][c] = Σ λ_out[r] ψ_in[c], summed over every group of 2^k amplitudes that M mixes. All three are one
 * pass here: each tile loads ψ and λ once, un-applies M^T to both with the forward's tile code (a coefficient
 * table of M^T) and adds the outer product to a per-thread accumulator, so the pass streams two states
 * through memory where the forward streams one.
 *
 * The outer product keeps the forward's vector layout. λ's row vectors are already loaded lane-permuted by
 * each pattern p of lane bits (they are the un-apply's inputs), so acc[h * dl + p][h'] += λ_p[h] · ψ_in[h']
 * pairs, in lane a, λ at (row h, lane a ^ flip_p) with ψ_in at (row h', lane a): one vector multiply-add
 * per (input, output row), 2^k per amplitude like the multiply itself. Lanes are folded into dL/dM once, at
 * the end.
 *
 * Sums: each thread adds into a vector accumulator in T for ADJOINT_FLUSH tiles, then into its own double
 * copy (a float32 lane never sums more than a few dozen products); the copies are added in thread order
 * after the parallel loop, whose static schedule gives every thread the same tiles on every call, so a
 * gradient does not change from one call to the next.
 */
/* tiles between flushes: few enough products per float32 lane to keep them exact to ~1e-6, many enough
 * that the flush's conversions cost a few percent of the tiles' multiply-adds */
#define ADJOINT_FLUSH 16

/* one tile of the adjoint: ψ and λ of `count` groups loaded, both un-applied by M^T (coef and matrix are
 * M^T's) and stored back, acc[i][h'] += λ input i · ψ_in row h' */
INLINE void DFN(adjoint_tile)(
    VEC *restrict psi, VEC *restrict lam, long long tile, long long run, int nh, const int32_t *row_bits,
    const size_t *off, int dh, int dl, int count, const MASK *masks, const VEC *coef, const T *matrix,
    VEC *restrict acc) {
    const int inputs = dh * dl;
    size_t bases[GROUPS];
    VEC xp[GROUPS << HPCQ_DENSE_MAX_QUBITS], xl[GROUPS << HPCQ_DENSE_MAX_QUBITS];
    VEC op[GROUPS << HPCQ_DENSE_MAX_QUBITS], ol[GROUPS << HPCQ_DENSE_MAX_QUBITS];
    DFN(tile_bases)(bases, tile, run, nh, row_bits, count);
    DFN(tile_load)(xp, psi, bases, off, dh, dl, count, masks);
    DFN(tile_load)(xl, lam, bases, off, dh, dl, count, masks);
    DFN(tile_multiply)(op, xp, dh, dl, count, coef, matrix);
    DFN(tile_multiply)(ol, xl, dh, dl, count, coef, matrix);
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

/*
 * psi, lam: 2^n_bits amplitudes each, VBYTES-aligned, the state and dL/dstate after the block; pos and matrix
 * as for hpcq_dense. Un-applies M from both in place and writes dL/dM (row-major [2^k][2^k], double) into
 * grad. Returns 0, -1 if memory ran out, -2 for arguments it does not take.
 */
int DFN(hpcq_dense_adjoint)(int n_bits, T *psi, T *lam, int k, const int32_t *pos, const T *matrix,
                            double *grad, int n_threads) {
    DFN(dense_plan_t) plan;
    const int prepared = DFN(dense_prepare)(&plan, n_bits, k, pos, matrix, 1);
    if (prepared < 0) return prepared;
    for (size_t j = 0; j < ((size_t)1 << (2 * k)); j++) grad[j] = 0;
    if (prepared == 1) {
        DFN(adjoint_scalar)(n_bits, psi, lam, k, pos, matrix, grad);
        return 0;
    }
    if (n_threads < 1) n_threads = 1;
    const int nh = plan.nh, nl = plan.nl, dh = plan.dh, dl = plan.dl, inputs = dh * dl, vectors = inputs * dh;
    /* every thread's accumulator starts on its own 256-byte block: threads never write one cache line */
    const size_t stride = ((size_t)vectors * sizeof(VEC) + 255) / 256 * 256 / sizeof(VEC);
    VEC *accs = aligned_alloc(256, (size_t)n_threads * stride * sizeof(VEC));
    double *sums = calloc((size_t)n_threads * vectors * DVL, sizeof(double));
    if (!accs || !sums) {
        free(accs);
        free(sums);
        DFN(dense_release)(&plan, matrix);
        return -1;
    }
    const long long groups = plan.groups, run = plan.run, tiles = (groups + GROUPS - 1) / GROUPS;
    const int32_t *row_bits = plan.row_bits;
    const size_t *off = plan.off;
    const MASK *masks = plan.masks;
    const VEC *coef = plan.coef;
    const T *transposed = plan.matrix;
    VEC *restrict vp = (VEC *)psi, *restrict vl = (VEC *)lam;
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#else
        const int thread = 0;
#endif
        VEC *acc = accs + (size_t)thread * stride;
        double *own = sums + (size_t)thread * vectors * DVL;
        for (int j = 0; j < vectors; j++) acc[j] = (VEC){0};
        int since_flush = 0;
#pragma omp for schedule(static)
        for (long long tile = 0; tile < tiles; tile++) {
            const int count = groups - tile * GROUPS < GROUPS ? (int)(groups - tile * GROUPS) : GROUPS;
            /* specialised like the forward's tiles, for the blocks of up to 4 qubits the backends fuse */
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
                DFN(adjoint_tile)(vp, vl, tile, run, nh, row_bits, off, dh, dl, count, masks, coef,
                                  transposed, acc);
            }
            if (++since_flush == ADJOINT_FLUSH) {
                DFN(adjoint_flush)(acc, own, vectors);
                since_flush = 0;
            }
        }
        DFN(adjoint_flush)(acc, own, vectors);
    }
    for (int t = 1; t < n_threads; t++)
        for (size_t j = 0; j < (size_t)vectors * DVL; j++) sums[j] += sums[(size_t)t * vectors * DVL + j];
    /* lane a of acc[h * dl + p][h'] is λ at (h, a ^ flip_p) times ψ_in at (h', a) */
    const int d = plan.d;
    for (int h = 0; h < dh; h++)
        for (int p = 0; p < dl; p++)
            for (int hp = 0; hp < dh; hp++)
                for (int a = 0; a < DVL; a++) {
                    const int r = DFN(matrix_index)(h, a ^ plan.flips[p], pos, plan.row, nh, plan.lane, nl);
                    const int c = DFN(matrix_index)(hp, a, pos, plan.row, nh, plan.lane, nl);
                    grad[(size_t)r * d + c] += sums[((size_t)(h * dl + p) * dh + hp) * DVL + a];
                }
    free(accs);
    free(sums);
    DFN(dense_release)(&plan, matrix);
    return 0;
}

#undef ADJOINT_FLUSH
