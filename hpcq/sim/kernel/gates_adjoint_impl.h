/*
 * The adjoint pass of the in-place path (dense_impl.h) for ONE state vector, gate by gate: included by
 * dense_impl.h once per precision; exported as hpcq_gates_adjoint_<PREC>.
 *
 * The backward pass of the adjoint method walks the gates in reverse with the final state ψ and λ = dL/dψ.
 * A call takes a *stage*: consecutive gates whose bits, with the lowest bits of a cache line, are few. The
 * state is cut into tiles over those bits; each tile of ψ and λ (in place when the tile bits are the lowest
 * ones, else copied into a buffer) stays in cache while every gate of the stage runs on it, so a stage
 * streams ψ and λ through memory once. Within the tile, a rotation costs 2 multiply-adds per amplitude for
 * ψ, 2 for λ and 1 for dL/dθ, a CNOT or CZ only moves or negates. Un-applying the fused blocks of the
 * forward instead costs 3·2^k multiply-adds per amplitude and k-qubit block (Mᵀψ, Mᵀλ and dL/dM), plus lane
 * shuffles of every input: at 24 qubits, float32, one thread, the 7 stages of the paper's ansatz took 0.86 s
 * by blocks and 0.55 s by gates. The gradient comes out per rotation (dL/dθ), not per block matrix.
 *
 * Operations (ops[i] = code, a, b, unused), in the order they are un-applied, on state index bits a, b:
 *   GATE_MATRIX  a constant real 2x2 matrix M (mats[4i..4i+3], row-major) on bit a: ψ ← Mᵀψ, λ ← Mᵀλ
 *   GATE_RY      R_Y(θ) = [[c, -s], [s, c]] given the same way; also dL/dθ into grads[i]
 *   GATE_CNOT    control a, target b (its own inverse)
 *   GATE_CZ      on a and b (its own inverse)
 *   GATE_RY_CNOT GATE_RY on bit a, then CNOT(control b, target a): the paper's CNOT+R_Y building block
 *                in reverse, in one sweep over the tile (the CNOT moves the rotation's outputs as stored)
 * With ψ and λ the gate's output states, dL/dθ = λᵀ (dR/dθ) ψ_in = ½ Σ (λ1 ψ0 − λ0 ψ1) over the pairs of
 * amplitudes the rotation mixes (0/1: the value of bit a), read before the gate is un-applied.
 *
 * Sums: per tile and operation a vector in T (at most ADJOINT_GATE_FLUSH products per lane) is widened into
 * a vector of doubles, whose lanes are then added into the thread's double sum of that operation; the sums
 * are added in thread order after the static schedule, so a gradient does not change between calls.
 */
#ifndef HPCQ_GATE_CODES
#define HPCQ_GATE_CODES
/* operation codes; hpcq/sim/kernel/dense.py mirrors them */
enum { GATE_MATRIX = 0, GATE_RY = 1, GATE_CNOT = 2, GATE_CZ = 3, GATE_RY_CNOT = 4 };
/* where the control of a CNOT that follows a rotation on its target sits (GATE_RY_CNOT) */
enum { NO_CONTROL = 0, ROW_CONTROL = 1, LANE_CONTROL = 2 };
#endif
/* 4096 amplitudes: 16 KiB of float32 per state */
#define STAGE_MIN_BITS 12
/* products per lane of a T accumulator before it is widened to double (float32: exact to ~1e-7 relative) */
#define ADJOINT_GATE_FLUSH 16

typedef double DFN(wide_t) __attribute__((vector_size(sizeof(double) * (VBYTES / sizeof(T)))));

/* a stage tile's runs of `run` consecutive amplitudes (starting at state offsets run_at[]) between the state
 * and a contiguous buffer, either way */
INLINE void DFN(stage_copy)(T *restrict buffer, T *restrict state, const size_t *run_at, size_t runs,
                            size_t run, int to_state) {
    for (size_t r = 0; r < runs; r++) {
        if (to_state) memcpy(state + run_at[r], buffer + r * run, run * sizeof(T));
        else memcpy(buffer + r * run, state + run_at[r], run * sizeof(T));
    }
}

/* the tile bits of a stage: every gate's (ks[g] bits each, in turn in positions[]), and the lowest ones, so
 * that tiles are whole cache lines, and at least STAGE_MIN_BITS of them (per-tile work stays small next to
 * the gates'); all bits (m = n_bits) when that leaves fewer than four tiles. Returns m, or -2 for a gate it
 * does not take (a position out of range or twice). */
static int DFN(stage_bits)(int32_t *tile_bits, int n_bits, int n_blocks, const int32_t *ks,
                           const int32_t *positions) {
    const int line = __builtin_ctz((unsigned)(64 / sizeof(T)));
    uint64_t used = 0;
    for (int j = 0; j < line && j < n_bits; j++) used |= (uint64_t)1 << j;
    for (int b = 0, at = 0; b < n_blocks; at += ks[b], b++) {
        if (ks[b] < 1 || ks[b] > HPCQ_DENSE_MAX_QUBITS) return -2;
        uint64_t mine = 0; /* this gate's bits, which must be distinct */
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

/* one operation as a tile sees it: local tile bits, Mᵀ for the row case, lane vectors for the lane case */
typedef struct {
    int code, a, b; /* local bits; for CNOT a is the control */
    T m[4];         /* Mᵀ row-major: the un-apply */
    VEC A, B;       /* a gate on lane bit a: v ← A·v + B·v[lane ^ bit a] */
    VEC sign;       /* R_Y on a lane: +1 where the lane's bit a is 1, else -1; CZ: -1 where both bits are 1 */
    MASK shuffle;   /* the lane permutation of the gate (lane xor for 1-qubit gates, CNOT on lanes) */
    MASK select;    /* CNOT with a lane control and a row target: all ones in the lanes whose control is 1 */
    MASK cnot[2];   /* GATE_RY_CNOT on a lane target: the CNOT's lane permutation where the control is 0, 1 */
} DFN(gate_t);

/* v with a zero bit inserted at position q */
INLINE size_t DFN(insert_zero)(size_t v, int q) {
    return ((v >> q) << (q + 1)) | (v & (((size_t)1 << q) - 1));
}

INLINE double DFN(lane_sum)(DFN(wide_t) v) {
    double s = 0;
    for (int a = 0; a < DVL; a++) s += v[a];
    return s;
}

/* a 1-qubit gate on row bit r (vector pairs i, i + 2^r) of V vectors; RY: also Σ (λ1 ψ0 − λ0 ψ1) into sum;
 * control: then a CNOT on the pair, controlled by row bit rc or by the lanes in `select` */
INLINE void DFN(gate_row)(VEC *restrict p, VEC *restrict l, size_t V, int r, const T *m, int ry, int control,
                          int rc, MASK select, double *sum) {
    const size_t s = (size_t)1 << r, half = V / 2;
    const T m00 = m[0], m01 = m[1], m10 = m[2], m11 = m[3];
    DFN(wide_t) total = {0};
    for (size_t j0 = 0; j0 < half; j0 += ADJOINT_GATE_FLUSH) {
        const size_t end = j0 + ADJOINT_GATE_FLUSH < half ? j0 + ADJOINT_GATE_FLUSH : half;
        VEC acc = {0};
        for (size_t j = j0; j < end; j++) {
            const size_t i = ((j >> r) << (r + 1)) | (j & (s - 1)), k = i + s;
            const VEC pa = p[i], pb = p[k], la = l[i], lb = l[k];
            if (ry) acc += lb * pa - la * pb;
            const VEC p0 = m00 * pa + m01 * pb, p1 = m10 * pa + m11 * pb;
            const VEC l0 = m00 * la + m01 * lb, l1 = m10 * la + m11 * lb;
            if (control == ROW_CONTROL) { /* swapped where the control is 1 */
                const size_t flip = ((i >> rc) & 1) << r;
                p[i + flip] = p0, p[k - flip] = p1, l[i + flip] = l0, l[k - flip] = l1;
            } else if (control == LANE_CONTROL) { /* swapped in the lanes whose control is 1 */
                const MASK keep = ~select;
                p[i] = (VEC)(((MASK)p0 & keep) | ((MASK)p1 & select));
                p[k] = (VEC)(((MASK)p1 & keep) | ((MASK)p0 & select));
                l[i] = (VEC)(((MASK)l0 & keep) | ((MASK)l1 & select));
                l[k] = (VEC)(((MASK)l1 & keep) | ((MASK)l0 & select));
            } else {
                p[i] = p0, p[k] = p1, l[i] = l0, l[k] = l1;
            }
        }
        if (ry) total += __builtin_convertvector(acc, DFN(wide_t));
    }
    if (ry) *sum += DFN(lane_sum)(total);
}

/* a 1-qubit gate on a lane bit: each vector against its lane-permuted self; control: then a CNOT on that
 * lane bit, controlled by row bit rc or by lanes (g->cnot) */
INLINE void DFN(gate_lane)(VEC *restrict p, VEC *restrict l, size_t V, const DFN(gate_t) *g, int ry,
                           int control, int rc, double *sum) {
    const VEC A = g->A, B = g->B;
    const MASK shuffle = g->shuffle;
    DFN(wide_t) total = {0};
    for (size_t i0 = 0; i0 < V; i0 += ADJOINT_GATE_FLUSH) {
        const size_t end = i0 + ADJOINT_GATE_FLUSH < V ? i0 + ADJOINT_GATE_FLUSH : V;
        VEC acc = {0};
        for (size_t i = i0; i < end; i++) {
            const VEC pv = p[i], lv = l[i];
            const VEC ps = __builtin_shuffle(pv, shuffle), ls = __builtin_shuffle(lv, shuffle);
            if (ry) acc += lv * ps; /* lane with bit 1: λ1 ψ0; with bit 0: λ0 ψ1, signed at the widening */
            VEC po = A * pv + B * ps, lo = A * lv + B * ls;
            if (control != NO_CONTROL) {
                const MASK move = g->cnot[control == ROW_CONTROL ? (i >> rc) & 1 : 1];
                po = __builtin_shuffle(po, move);
                lo = __builtin_shuffle(lo, move);
            }
            p[i] = po;
            l[i] = lo;
        }
        if (ry) total += __builtin_convertvector(acc * g->sign, DFN(wide_t));
    }
    if (ry) *sum += DFN(lane_sum)(total);
}

INLINE void DFN(swap_vectors)(VEC *restrict v, size_t i, size_t k) {
    const VEC t = v[i];
    v[i] = v[k];
    v[k] = t;
}

/* CNOT(control a, target b) on local bits, lb of them lane bits */
INLINE void DFN(gate_cnot)(VEC *restrict p, VEC *restrict l, size_t V, const DFN(gate_t) *g, int lb) {
    const int c = g->a, t = g->b;
    if (c >= lb && t >= lb) { /* swap the vectors whose control is 1 with their target partners */
        const int rc = c - lb, rt = t - lb, lo = rc < rt ? rc : rt, hi = rc < rt ? rt : rc;
        for (size_t j = 0; j < V / 4; j++) {
            const size_t i = DFN(insert_zero)(DFN(insert_zero)(j, lo), hi) | ((size_t)1 << rc);
            const size_t k = i | ((size_t)1 << rt);
            DFN(swap_vectors)(p, i, k);
            DFN(swap_vectors)(l, i, k);
        }
    } else if (c >= lb) { /* row control, lane target: permute the lanes of the vectors whose control is 1 */
        const int rc = c - lb;
        for (size_t j = 0; j < V / 2; j++) {
            const size_t i = DFN(insert_zero)(j, rc) | ((size_t)1 << rc);
            p[i] = __builtin_shuffle(p[i], g->shuffle);
            l[i] = __builtin_shuffle(l[i], g->shuffle);
        }
    } else if (t >= lb) { /* lane control, row target: swap the control-1 lanes of each vector pair */
        const int rt = t - lb;
        const MASK on = g->select, off = ~g->select;
        for (size_t j = 0; j < V / 2; j++) {
            const size_t i = DFN(insert_zero)(j, rt), k = i + ((size_t)1 << rt);
            const MASK pa = (MASK)p[i], pb = (MASK)p[k], la = (MASK)l[i], lk = (MASK)l[k];
            p[i] = (VEC)((pa & off) | (pb & on));
            p[k] = (VEC)((pb & off) | (pa & on));
            l[i] = (VEC)((la & off) | (lk & on));
            l[k] = (VEC)((lk & off) | (la & on));
        }
    } else { /* both on lanes: one permutation of every vector */
        for (size_t i = 0; i < V; i++) {
            p[i] = __builtin_shuffle(p[i], g->shuffle);
            l[i] = __builtin_shuffle(l[i], g->shuffle);
        }
    }
}

/* CZ on local bits a, b: negate where both are 1 */
INLINE void DFN(gate_cz)(VEC *restrict p, VEC *restrict l, size_t V, const DFN(gate_t) *g, int lb) {
    const int row_a = g->a >= lb, row_b = g->b >= lb;
    if (row_a && row_b) {
        const int ra = g->a - lb, rb = g->b - lb, lo = ra < rb ? ra : rb, hi = ra < rb ? rb : ra;
        for (size_t j = 0; j < V / 4; j++) {
            const size_t i =
                DFN(insert_zero)(DFN(insert_zero)(j, lo), hi) | ((size_t)1 << ra) | ((size_t)1 << rb);
            p[i] = -p[i];
            l[i] = -l[i];
        }
    } else if (row_a || row_b) { /* the lane signs, in the vectors whose row bit is 1 */
        const int r = (row_a ? g->a : g->b) - lb;
        for (size_t j = 0; j < V / 2; j++) {
            const size_t i = DFN(insert_zero)(j, r) | ((size_t)1 << r);
            p[i] *= g->sign;
            l[i] *= g->sign;
        }
    } else {
        for (size_t i = 0; i < V; i++) {
            p[i] *= g->sign;
            l[i] *= g->sign;
        }
    }
}

/* every operation of the stage on one tile of V vectors (ψ at p, λ at l), dL/dθ added into sums[op]; each
 * operation streams through the tile (in L2): at 2^12-2^16 float32 amplitudes an R_Y ran at the same ~2
 * cycles a vector, so sub-tiles kept in L1 across operations (tried) gained nothing */
static void DFN(gates_tile)(VEC *restrict p, VEC *restrict l, size_t V, const DFN(gate_t) *gates, int n_ops,
                            int lb, double *sums) {
    for (int o = 0; o < n_ops; o++) {
        const DFN(gate_t) *g = &gates[o];
        switch (g->code) {
        case GATE_MATRIX:
            if (g->a >= lb) DFN(gate_row)(p, l, V, g->a - lb, g->m, 0, NO_CONTROL, 0, g->select, NULL);
            else DFN(gate_lane)(p, l, V, g, 0, NO_CONTROL, 0, NULL);
            break;
        case GATE_RY:
            if (g->a >= lb) DFN(gate_row)(p, l, V, g->a - lb, g->m, 1, NO_CONTROL, 0, g->select, sums + o);
            else DFN(gate_lane)(p, l, V, g, 1, NO_CONTROL, 0, sums + o);
            break;
        case GATE_RY_CNOT: /* the four placements of target a and control b, each its own loop */
            if (g->a >= lb && g->b >= lb)
                DFN(gate_row)(p, l, V, g->a - lb, g->m, 1, ROW_CONTROL, g->b - lb, g->select, sums + o);
            else if (g->a >= lb)
                DFN(gate_row)(p, l, V, g->a - lb, g->m, 1, LANE_CONTROL, 0, g->select, sums + o);
            else if (g->b >= lb)
                DFN(gate_lane)(p, l, V, g, 1, ROW_CONTROL, g->b - lb, sums + o);
            else
                DFN(gate_lane)(p, l, V, g, 1, LANE_CONTROL, 0, sums + o);
            break;
        case GATE_CNOT: DFN(gate_cnot)(p, l, V, g, lb); break;
        default: DFN(gate_cz)(p, l, V, g, lb);
        }
    }
}

/* A state narrower than one vector: every operation amplitude by amplitude. */
static void DFN(gates_scalar)(int n_bits, T *psi, T *lam, int n_ops, const int32_t *ops, const T *mats,
                              double *grads) {
    const size_t size = (size_t)1 << n_bits;
    for (int o = 0; o < n_ops; o++) {
        const int code = ops[4 * o];
        const size_t a = (size_t)1 << ops[4 * o + 1], b = code >= GATE_CNOT ? (size_t)1 << ops[4 * o + 2] : 0;
        const T *m = mats + 4 * o;
        for (size_t i = 0; i < size; i++) {
            if ((code <= GATE_RY || code == GATE_RY_CNOT) && !(i & a)) {
                const size_t k = i | a;
                const T p0 = psi[i], p1 = psi[k], l0 = lam[i], l1 = lam[k];
                if (code != GATE_MATRIX) grads[o] += 0.5 * ((double)l1 * p0 - (double)l0 * p1);
                const size_t flip = code == GATE_RY_CNOT && (i & b) ? a : 0; /* the CNOT: swapped */
                psi[i ^ flip] = m[0] * p0 + m[2] * p1;
                psi[k ^ flip] = m[1] * p0 + m[3] * p1;
                lam[i ^ flip] = m[0] * l0 + m[2] * l1;
                lam[k ^ flip] = m[1] * l0 + m[3] * l1;
            } else if (code == GATE_CNOT && (i & a) && !(i & b)) {
                const T tp = psi[i], tl = lam[i];
                psi[i] = psi[i | b], lam[i] = lam[i | b];
                psi[i | b] = tp, lam[i | b] = tl;
            } else if (code == GATE_CZ && (i & a) && (i & b)) {
                psi[i] = -psi[i];
                lam[i] = -lam[i];
            }
        }
    }
}

/* the tile's view of operation o: local bits, Mᵀ, and the lane vectors of the bits that are lane bits */
static void DFN(gate_prepare)(DFN(gate_t) *g, const int32_t *op, const T *m, const int *local_bit, int lb) {
    g->code = op[0];
    g->a = local_bit[op[1]];
    g->b = op[0] >= GATE_CNOT ? local_bit[op[2]] : -1;
    const int control = g->code == GATE_RY_CNOT ? g->b : g->a; /* the CNOT's */
    g->m[0] = m[0], g->m[1] = m[2], g->m[2] = m[1], g->m[3] = m[3];
    const int lane_a = g->a < lb, lane_b = g->b >= 0 && g->b < lb;
    for (int lane = 0; lane < DVL; lane++) {
        const int bit_a = lane_a ? (lane >> g->a) & 1 : 0, bit_b = lane_b ? (lane >> g->b) & 1 : 0;
        int to = lane;
        if ((g->code <= GATE_RY || g->code == GATE_RY_CNOT) && lane_a) to = lane ^ (1 << g->a);
        else if (g->code == GATE_CNOT && lane_b && (bit_a || !lane_a)) to = lane ^ (1 << g->b);
        g->shuffle[lane] = to;
        g->A[lane] = g->m[3 * bit_a]; /* Mᵀ[bit][bit] */
        g->B[lane] = g->m[bit_a ? 2 : 1]; /* Mᵀ[bit][1 - bit] */
        if (g->code == GATE_CZ) /* -1 where the lane bits among a, b are all 1 */
            g->sign[lane] = (lane_a && !bit_a) || (lane_b && !bit_b) ? 1 : -1;
        else
            g->sign[lane] = bit_a ? 1 : -1;
        const int bit_control = control >= 0 && control < lb ? (lane >> control) & 1 : 0;
        g->select[lane] = bit_control ? -1 : 0;
        g->cnot[0][lane] = lane; /* a row control of 0: no move */
        g->cnot[1][lane] = lane_a && (control >= lb || bit_control) ? lane ^ (1 << g->a) : lane;
    }
}

/*
 * psi, lam: 2^n_bits amplitudes each, VBYTES-aligned: the state and dL/dstate after the stage. Un-applies the
 * n_ops operations (ops[4i..4i+3] = code, bit a, bit b, 0; mats[4i..4i+3] the 2x2 matrix of GATE_MATRIX and
 * GATE_RY), in that order, from both in place, and writes dL/dθ of each GATE_RY into grads[i] (0 for the
 * other operations). Returns 0, -1 if memory ran out, -2 for arguments it does not take.
 */
int DFN(hpcq_gates_adjoint)(int n_bits, T *psi, T *lam, int n_ops, const int32_t *ops, const T *mats,
                            double *grads, int n_threads) {
    if (n_bits < 0 || n_bits > 62 || n_ops < 1) return -2;
    int32_t ks[n_ops], positions[2 * n_ops];
    int at = 0;
    for (int o = 0; o < n_ops; o++) {
        const int code = ops[4 * o];
        if (code < GATE_MATRIX || code > GATE_RY_CNOT) return -2;
        ks[o] = code >= GATE_CNOT ? 2 : 1;
        for (int j = 0; j < ks[o]; j++) positions[at++] = ops[4 * o + 1 + j];
        grads[o] = 0;
    }
    const int lb = __builtin_ctz((unsigned)DVL);
    int32_t tile_bits[64], outer_bits[64];
    const int m = DFN(stage_bits)(tile_bits, n_bits, n_ops, ks, positions);
    if (m < 0) return -2;
    if (n_bits < lb) {
        DFN(gates_scalar)(n_bits, psi, lam, n_ops, ops, mats, grads);
        return 0;
    }
    const int n_outer = complement(outer_bits, tile_bits, m, n_bits);
    int local_bit[64];
    for (int j = 0; j < m; j++) local_bit[tile_bits[j]] = j;
    int c0 = 0; /* the tile's bits 0..c0-1 are the state's: runs of 2^c0 amplitudes are contiguous in both */
    while (c0 < m && tile_bits[c0] == c0) c0++;
    const size_t run = (size_t)1 << c0, runs = (size_t)1 << (m - c0), tile = (size_t)1 << m;
    const int in_place = runs == 1; /* a tile is one contiguous run: no copies */
    const int whole = m == n_bits;
    if (whole || n_threads < 1) n_threads = 1;
    DFN(gate_t) *gates = aligned_alloc(_Alignof(DFN(gate_t)), (size_t)n_ops * sizeof(DFN(gate_t)));
    size_t *run_at = malloc(runs * sizeof(size_t));
    double *sums = calloc((size_t)n_threads * n_ops, sizeof(double));
    T *buffers = in_place ? NULL : aligned_alloc(VBYTES, (size_t)n_threads * 2 * tile * sizeof(T));
    if (!gates || !run_at || !sums || (!in_place && !buffers)) {
        free(gates);
        free(run_at);
        free(sums);
        free(buffers);
        return -1;
    }
    for (int o = 0; o < n_ops; o++) DFN(gate_prepare)(&gates[o], ops + 4 * o, mats + 4 * o, local_bit, lb);
    for (size_t r = 0; r < runs; r++) run_at[r] = deposit_bits(r, tile_bits + c0, m - c0);
    const long long outer = (long long)1 << n_outer;
    const size_t V = tile / DVL;
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#else
        const int thread = 0;
#endif
        double *own = sums + (size_t)thread * n_ops;
        T *bp = in_place ? NULL : buffers + (size_t)thread * 2 * tile, *bl = in_place ? NULL : bp + tile;
#pragma omp for schedule(static)
        for (long long t = 0; t < outer; t++) {
            const size_t base = deposit_bits((size_t)t, outer_bits, n_outer);
            if (in_place) {
                DFN(gates_tile)((VEC *)(psi + base), (VEC *)(lam + base), V, gates, n_ops, lb, own);
                continue;
            }
            DFN(stage_copy)(bp, psi + base, run_at, runs, run, 0);
            DFN(stage_copy)(bl, lam + base, run_at, runs, run, 0);
            DFN(gates_tile)((VEC *)bp, (VEC *)bl, V, gates, n_ops, lb, own);
            DFN(stage_copy)(bp, psi + base, run_at, runs, run, 1);
            DFN(stage_copy)(bl, lam + base, run_at, runs, run, 1);
        }
    }
    for (int t = 0; t < n_threads; t++)
        for (int o = 0; o < n_ops; o++) grads[o] += 0.5 * sums[(size_t)t * n_ops + o];
    free(gates);
    free(run_at);
    free(sums);
    free(buffers);
    return 0;
}

#undef ADJOINT_GATE_FLUSH
#undef STAGE_MIN_BITS

