/*
 * A dense real 2^k x 2^k matrix applied in place to k index bits of ONE state vector (the distributed
 * backend's rank slice: 2^n amplitudes, no batch of samples to vectorise over). Included by real_gates.c
 * once per precision (T, VEC, MASK, PREC defined); exported as hpcq_dense_<PREC>.
 *
 * SIMD runs over consecutive amplitudes: a vector holds the VL amplitudes of index bits 0..log2(VL)-1.
 * The matrix's bits split into "row" bits (positions >= log2 VL: whole vectors at different offsets) and
 * "lane" bits (inside a vector). For lane bits the partner amplitudes sit in other lanes of the same vector,
 * so each input vector is also used lane-xor-permuted by every pattern p of lane bits, against a
 * coefficient vector holding, per lane a, M[row(h', a), col(h, a ^ p)]. Every output vector is then a sum
 * of 2^k vector multiply-adds, whatever bits the block acts on: one read and one write of the state per
 * block, 2^k multiply-adds per amplitude, and no layout copies.
 */
#define DVL ((int)(VBYTES / sizeof(T)))
#ifndef GROUPS /* overridable for tuning: gcc -DGROUPS=4 -DROWS=2 ... */
/* groups per tile (each coefficient loaded serves this many) and output rows per register block: 2 x 4 was
 * the fastest of 2x4, 4x2, 4x4, 8x1 for 3-5 qubit blocks at 2^24 float32 amplitudes on the 2-core AVX2
 * development machine */
#define GROUPS 2
#define ROWS 4
#endif
#define DFN(name) CAT(name, PREC)
/* the helpers below are inlined into each call site so that constant widths specialise them */
#define INLINE static inline __attribute__((always_inline))

/* bit j of v goes to position pos[idx[j]] (j < m) */
static inline size_t DFN(spread)(size_t v, const int32_t *pos, const int *idx, int m) {
    size_t r = 0;
    for (int j = 0; j < m; j++) r |= ((v >> j) & (size_t)1) << pos[idx[j]];
    return r;
}

/* the matrix index whose row bits are `h` and whose lane bits are those of lane `a` */
static inline int DFN(matrix_index)(int h, int a, const int32_t *pos, const int *row, int nh, const int *lane,
                                    int nl) {
    int r = 0;
    for (int j = 0; j < nh; j++) r |= ((h >> j) & 1) << row[j];
    for (int j = 0; j < nl; j++) r |= ((a >> pos[lane[j]]) & 1) << lane[j];
    return r;
}

/* rows hp0 .. hp0+B of G groups at once: B*G accumulators stay in registers over all 2^k inputs, and each
 * coefficient loaded serves G groups. CT is the coefficient type: a vector per (row, input) when the block has
 * lane bits, else one scalar, the matrix itself (VL times smaller than a vector table). */
#define ROWS_FN(TAG, B, G) CAT(CAT(CAT(DFN(dense_rows), TAG), B), G)
#define DENSE_ROWS(TAG, CT, B, G)                                                                          \
    INLINE void ROWS_FN(TAG, B, G)(VEC *restrict out, const VEC *restrict x, const CT *restrict coef,      \
                                   int hp0, int inputs, int dh) {                                          \
        VEC acc[B][G];                                                                                     \
        for (int b = 0; b < B; b++)                                                                        \
            for (int g = 0; g < G; g++) acc[b][g] = (VEC){0};                                              \
        for (int j = 0; j < inputs; j++)                                                                   \
            for (int b = 0; b < B; b++) {                                                                  \
                const CT c = coef[(size_t)(hp0 + b) * inputs + j];                                         \
                for (int g = 0; g < G; g++) acc[b][g] += c * x[g * inputs + j];                            \
            }                                                                                              \
        for (int b = 0; b < B; b++)                                                                        \
            for (int g = 0; g < G; g++) out[g * dh + hp0 + b] = acc[b][g];                                 \
    }
/* all rows of G groups (dh and WIDEST are powers of two: WIDEST rows at a time, or one when dh is smaller) */
#define DENSE_GROUPS(TAG, CT, G, WIDEST)                                                                   \
    DENSE_ROWS(TAG, CT, 1, G)                                                                              \
    DENSE_ROWS(TAG, CT, WIDEST, G)                                                                         \
    INLINE void CAT(CAT(DFN(dense_groups), TAG), G)(VEC *restrict out, const VEC *restrict x,              \
                                                    const CT *restrict coef, int inputs, int dh) {         \
        int hp = 0;                                                                                        \
        for (; hp + WIDEST <= dh; hp += WIDEST) ROWS_FN(TAG, WIDEST, G)(out, x, coef, hp, inputs, dh);     \
        for (; hp < dh; hp++) ROWS_FN(TAG, 1, G)(out, x, coef, hp, inputs, dh);                            \
    }
DENSE_GROUPS(vector, VEC, 1, 8)
DENSE_GROUPS(vector, VEC, GROUPS, ROWS)
DENSE_GROUPS(scalar, T, 1, 8)
DENSE_GROUPS(scalar, T, GROUPS, ROWS)
#undef DENSE_GROUPS
#undef DENSE_ROWS
#undef ROWS_FN

/* the first vector of each of a tile's `count` groups */
INLINE void DFN(tile_bases)(size_t *bases, long long tile, long long run, int nh, const int32_t *row_bits,
                            int count) {
    for (int g = 0; g < count; g++) {
        /* a tile lies within one run of consecutive groups (both are powers of two) unless runs are
         * shorter than a tile; there one zero-bit insertion gives every base */
        size_t base = (size_t)(tile * GROUPS + g);
        if (g > 0 && run >= GROUPS) {
            base = bases[g - 1] + 1;
        } else {
            for (int j = 0; j < nh; j++) {
                const int q = row_bits[j];
                base = ((base >> q) << (q + 1)) | (base & (((size_t)1 << q) - 1));
            }
        }
        bases[g] = base;
    }
}

/* the inputs of a tile's groups: x[g][h * dl + p] = row vector h of group g, lane-permuted by pattern p */
INLINE void DFN(tile_load)(VEC *restrict x, const VEC *restrict vectors, const size_t *bases,
                           const size_t *off, int dh, int dl, int count, const MASK *masks) {
    for (int g = 0; g < count; g++) {
        VEC *restrict xg = x + g * dh * dl;
        if (dl == 1) {
            for (int h = 0; h < dh; h++) xg[h] = vectors[bases[g] + off[h]];
        } else {
            for (int h = 0; h < dh; h++) {
                const VEC v = vectors[bases[g] + off[h]];
                for (int p = 0; p < dl; p++) xg[h * dl + p] = __builtin_shuffle(v, masks[p]);
            }
        }
    }
}

/* out[g][h] = Σ_i coefficient(h, i) · x[g][i]: the matrix's scalars when the block has no lane bits */
INLINE void DFN(tile_multiply)(VEC *restrict out, const VEC *restrict x, int dh, int dl, int count,
                               const VEC *coef, const T *matrix) {
    const int inputs = dh * dl;
    if (dl == 1 && count == GROUPS) {
        CAT(CAT(DFN(dense_groups), scalar), GROUPS)(out, x, matrix, inputs, dh);
    } else if (dl == 1) {
        for (int g = 0; g < count; g++)
            CAT(CAT(DFN(dense_groups), scalar), 1)(out + g * dh, x + g * inputs, matrix, inputs, dh);
    } else if (count == GROUPS) {
        CAT(CAT(DFN(dense_groups), vector), GROUPS)(out, x, coef, inputs, dh);
    } else {
        for (int g = 0; g < count; g++)
            CAT(CAT(DFN(dense_groups), vector), 1)(out + g * dh, x + g * inputs, coef, inputs, dh);
    }
}

INLINE void DFN(tile_store)(VEC *restrict vectors, const VEC *restrict out, const size_t *bases,
                            const size_t *off, int dh, int count) {
    for (int g = 0; g < count; g++)
        for (int h = 0; h < dh; h++) vectors[bases[g] + off[h]] = out[g * dh + h];
}

/* one tile: load the inputs of `count` groups (lane-permuted when the block has lane bits), multiply, store
 * back in place */
INLINE void DFN(dense_tile)(
    VEC *restrict vectors, long long tile, long long run, int nh, const int32_t *row_bits, const size_t *off,
    int dh, int dl, int count, const MASK *masks, const VEC *coef, const T *matrix) {
    size_t bases[GROUPS];
    VEC x[GROUPS << HPCQ_DENSE_MAX_QUBITS], out[GROUPS << HPCQ_DENSE_MAX_QUBITS];
    DFN(tile_bases)(bases, tile, run, nh, row_bits, count);
    DFN(tile_load)(x, vectors, bases, off, dh, dl, count, masks);
    DFN(tile_multiply)(out, x, dh, dl, count, coef, matrix);
    DFN(tile_store)(vectors, out, bases, off, dh, count);
}

/* A state narrower than one vector (8 float32 amplitudes against 16 AVX-512 lanes): scalar gather, multiply
 * and scatter per group of 2^k amplitudes. Such states are a few dozen bytes; speed does not matter there. */
/* amplitude h of the group whose other bits are `base`: bit j of h at pos[j] */
static inline size_t DFN(group_index)(size_t base, int h, int k, const int32_t *pos) {
    for (int j = 0; j < k; j++) base |= (size_t)((h >> j) & 1) << pos[j];
    return base;
}

static void DFN(dense_scalar)(int n_bits, T *state, int k, const int32_t *pos, const T *matrix) {
    const int d = 1 << k;
    size_t mask = 0, index[1 << HPCQ_DENSE_MAX_QUBITS];
    T in[1 << HPCQ_DENSE_MAX_QUBITS];
    for (int j = 0; j < k; j++) mask |= (size_t)1 << pos[j];
    for (size_t base = 0; base < ((size_t)1 << n_bits); base++) {
        if (base & mask) continue;
        for (int h = 0; h < d; h++) {
            index[h] = DFN(group_index)(base, h, k, pos);
            in[h] = state[index[h]];
        }
        for (int h = 0; h < d; h++) {
            T out = 0;
            for (int c = 0; c < d; c++) out += matrix[(size_t)h * d + c] * in[c];
            state[index[h]] = out;
        }
    }
}

/* A block's pass: the split of its bits into row and lane bits, the lane-xor shuffle per pattern of lane
 * bits, the vector offsets of its rows, the group count, and the coefficient table of M. */
typedef struct {
    int nh, nl, dh, dl, d, row[HPCQ_DENSE_MAX_QUBITS], lane[HPCQ_DENSE_MAX_QUBITS];
    int flips[1 << HPCQ_DENSE_MAX_QUBITS]; /* the lane-index bits each pattern of lane bits flips */
    MASK masks[1 << HPCQ_DENSE_MAX_QUBITS]; /* lane a reads lane a ^ flip: vpermps/vpermpd on AVX2 */
    size_t off[1 << HPCQ_DENSE_MAX_QUBITS];
    int32_t row_bits[HPCQ_DENSE_MAX_QUBITS];
    long long groups, run;
    VEC *coef; /* [dh][dh * dl] vectors; used when the block has lane bits */
    const T *matrix; /* row-major [d][d], the caller's */
} DFN(dense_plan_t);

/* Checks the arguments (returns -2 for what the kernel does not take) and, unless the state is narrower than
 * one vector (returns 1: the scalar path), fills `plan` for M (returns 0; -1 if memory ran out). */
static int DFN(dense_prepare)(DFN(dense_plan_t) *plan, int n_bits, int k, const int32_t *pos,
                              const T *matrix) {
    const int lb = __builtin_ctz((unsigned)DVL);
    if (k < 1 || k > HPCQ_DENSE_MAX_QUBITS || n_bits < 0 || n_bits > 62) return -2;
    int nh = 0, nl = 0;
    for (int j = 0; j < k; j++) {
        if (pos[j] < 0 || pos[j] >= n_bits) return -2;
        for (int i = 0; i < j; i++)
            if (pos[i] == pos[j]) return -2;
        if (pos[j] < lb) plan->lane[nl++] = j;
        else plan->row[nh++] = j;
    }
    if (n_bits < lb) return 1;
    const int dh = 1 << nh, dl = 1 << nl, d = 1 << k, inputs = dh * dl;
    plan->nh = nh, plan->nl = nl, plan->dh = dh, plan->dl = dl, plan->d = d;
    plan->matrix = matrix;
    plan->coef = aligned_alloc(VBYTES, (size_t)dh * inputs * sizeof(VEC));
    if (!plan->coef) return -1;
    for (int p = 0; p < dl; p++) {
        plan->flips[p] = (int)DFN(spread)((size_t)p, pos, plan->lane, nl);
        plan->masks[p] = IOTA ^ plan->flips[p];
    }
    for (int hp = 0; hp < dh; hp++)
        for (int h = 0; h < dh; h++)
            for (int p = 0; p < dl; p++) {
                const int flip = plan->flips[p];
                VEC c;
                for (int a = 0; a < DVL; a++) {
                    const int r = DFN(matrix_index)(hp, a, pos, plan->row, nh, plan->lane, nl);
                    const int s = DFN(matrix_index)(h, a ^ flip, pos, plan->row, nh, plan->lane, nl);
                    c[a] = plan->matrix[(size_t)r * d + s];
                }
                plan->coef[(size_t)hp * inputs + h * dl + p] = c;
            }
    /* vector offsets of the row bits, and the group count: every setting of the other vector-index bits */
    for (int j = 0; j < nh; j++) plan->row_bits[j] = pos[plan->row[j]] - lb;
    for (int j = 1; j < nh; j++) /* ascending, for the zero-bit insertion of the tiles */
        for (int i = j; i > 0 && plan->row_bits[i - 1] > plan->row_bits[i]; i--) {
            const int32_t t = plan->row_bits[i];
            plan->row_bits[i] = plan->row_bits[i - 1];
            plan->row_bits[i - 1] = t;
        }
    for (int h = 0; h < dh; h++) plan->off[h] = DFN(spread)((size_t)h, pos, plan->row, nh) >> lb;
    plan->groups = (long long)1 << (n_bits - lb - nh);
    /* how many consecutive groups are adjacent vectors */
    plan->run = nh ? (long long)1 << plan->row_bits[0] : plan->groups;
    return 0;
}

/*
 * state: 2^n_bits amplitudes, VBYTES-aligned; pos[j]: the index bit that matrix bit j acts on (distinct);
 * matrix: row-major [2^k][2^k], out = M · in. Returns 0, -1 if memory ran out, -2 for arguments it does not
 * take (k outside 1..HPCQ_DENSE_MAX_QUBITS, a position out of range).
 */
int DFN(hpcq_dense)(int n_bits, T *state, int k, const int32_t *pos, const T *matrix, int n_threads) {
    DFN(dense_plan_t) plan;
    const int prepared = DFN(dense_prepare)(&plan, n_bits, k, pos, matrix);
    if (prepared == 1) {
        DFN(dense_scalar)(n_bits, state, k, pos, matrix);
        return 0;
    }
    if (prepared != 0) return prepared;
    const int nh = plan.nh, nl = plan.nl, dh = plan.dh, dl = plan.dl;
    const long long groups = plan.groups, run = plan.run;
    const int32_t *row_bits = plan.row_bits;
    const size_t *off = plan.off;
    const MASK *masks = plan.masks;
    const VEC *coef = plan.coef;
    VEC *restrict vectors = (VEC *)state;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (long long tile = 0; tile < (groups + GROUPS - 1) / GROUPS; tile++) {
        const int count = groups - tile * GROUPS < GROUPS ? (int)(groups - tile * GROUPS) : GROUPS;
        /* full tiles of blocks up to 5 qubits get code specialised for their widths: with the loop bounds
         * known, a tile's loads, shuffles and stores compile to straight-line code (at 2^26 float32
         * amplitudes: 2.5x faster for a block on qubits 25 and 0, 1.8x on qubits 0-2, 2-3x for row-only
         * blocks of 1-2 qubits) */
#define TILE(NH, NL) \
    DFN(dense_tile)(vectors, tile, run, NH, row_bits, off, 1 << (NH), 1 << (NL), GROUPS, masks, coef, matrix)
#define TILE_CASE(NH, NL) case (NH) * 8 + (NL): TILE(NH, NL); break;
        if (count == GROUPS && nh + nl <= 5) {
            switch (nh * 8 + nl) {
            TILE_CASE(1, 0) TILE_CASE(2, 0) TILE_CASE(3, 0) TILE_CASE(4, 0) TILE_CASE(5, 0)
            TILE_CASE(0, 1) TILE_CASE(1, 1) TILE_CASE(2, 1) TILE_CASE(3, 1) TILE_CASE(4, 1)
            TILE_CASE(0, 2) TILE_CASE(1, 2) TILE_CASE(2, 2) TILE_CASE(3, 2)
            TILE_CASE(0, 3) TILE_CASE(1, 3) TILE_CASE(2, 3)
            default: TILE(nh, nl);
            }
#undef TILE_CASE
#undef TILE
        } else {
            DFN(dense_tile)(vectors, tile, run, nh, row_bits, off, dh, dl, count, masks, coef, matrix);
        }
    }
    free(plan.coef);
    return 0;
}

#include "gates_adjoint_impl.h"

#undef DVL
#undef INLINE
#undef DFN
