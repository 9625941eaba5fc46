/*
 * Compiled kernels of the statevector backend's real-arithmetic path (gates ry, cnot, cz, x, z, h).
 *
 * Layout: a state is [n_chunks][2**n rows][W lanes], one lane per sample, W = NV vectors of VL lanes.
 * Every gate therefore updates whole SIMD vectors of samples with one (per-lane) angle each, whatever
 * qubit it acts on.
 *
 * Cache blocking: the circuit arrives as stages; a stage lists up to k "local" qubits and the gates that
 * act only on them. For each tile (one setting of the other n - k bits) the 2**k rows are gathered into a
 * buffer that fits in L2 (or used in place when the local qubits are 0..k-1), every gate of the stage is
 * applied there, and the tile is written back: one pass over memory per stage instead of one per gate.
 *
 * Forward: load ψ0 (or |0...0>), run the stages, measure the Pauli observables (sums in double precision).
 * Backward (adjoint method): seed λ = Σ_i g_i ∂<P_i>/∂ψ, then stages and gates in reverse; for each rotation
 * dL/dθ = 1/2 Σ (λ1 ψ0 − λ0 ψ1) is read off the gate's output states, then the gate is un-applied to ψ and
 * λ in the same pass. Gradients are kept per lane (per sample) in double precision.
 *
 * Threads (OpenMP) own whole chunks when there are at least as many chunks as threads, else they share the
 * tiles of one stage at a time.
 *
 * real_gates_impl.h holds the kernels; it is included once per (precision, NV) instantiation below.
 * dense_impl.h holds hpcq_dense_<prec>, the distributed backend's in-place fused-block kernel for one state
 * vector (SIMD over amplitudes instead of samples), and includes gates_adjoint_impl.h, its adjoint pass gate
 * by gate (hpcq_gates_adjoint_<prec>); both once per precision.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* the CPU's vector width; -DVBYTES=32|64 forces one (GCC lowers wider vectors than the CPU has to several
 * narrower ones), so both widths' code is tested on any machine */
#ifndef VBYTES
#if defined(__AVX512F__)
#define VBYTES 64
#else
#define VBYTES 32
#endif
#endif

/* operation codes; hpcq/sim/kernel/program.py mirrors them */
enum { OP_RY = 0, OP_CNOT = 1, OP_CNOT_RY = 2, OP_CZ = 3, OP_X = 4, OP_Z = 5, OP_H = 6 };

/* naturally aligned: an element-aligned type makes gcc split every 256-bit store on some CPUs; the caller
 * passes VBYTES-aligned arrays whose rows are whole vectors */
typedef float vec_f32 __attribute__((vector_size(VBYTES)));
typedef double vec_f64 __attribute__((vector_size(VBYTES)));
/* lane-index vectors for __builtin_shuffle, one element per lane of vec_f32 / vec_f64 */
typedef int32_t mask_f32 __attribute__((vector_size(VBYTES)));
typedef int64_t mask_f64 __attribute__((vector_size(VBYTES)));
/* the identity lane order, for the lane-xor masks of dense_impl.h */
#if VBYTES == 64
#define IOTA_f32 ((mask_f32){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
#define IOTA_f64 ((mask_f64){0, 1, 2, 3, 4, 5, 6, 7})
#else
#define IOTA_f32 ((mask_f32){0, 1, 2, 3, 4, 5, 6, 7})
#define IOTA_f64 ((mask_f64){0, 1, 2, 3})
#endif

/** Widest block hpcq_dense_<prec> applies (its coefficients, 2^(k + row bits) vectors, then still fit L2). */
#define HPCQ_DENSE_MAX_QUBITS 6
int hpcq_dense_max_qubits(void) { return HPCQ_DENSE_MAX_QUBITS; }

/** Bytes of one SIMD vector: the loader sizes a chunk's lanes from it. */
int hpcq_vector_bytes(void) { return VBYTES; }

/** Bumped whenever an exported signature changes, so a stale cached build is never called. */
int hpcq_abi_version(void) { return 8; }

/** Whether the build has OpenMP (else every call runs on one thread). */
int hpcq_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* dL/dθ [n_rot][padded] into the parameters it came from: summed over the batch into grad_weights for a
 * weight angle, per sample into grad_features ([batch][n_features]) for a feature angle (kinds as in
 * hpcq_angles); both are added to */
void hpcq_scatter_gradients(int n_rot, const int32_t *source, const double *grad, int batch, int padded,
                            double *grad_weights, double *grad_features, int n_features) {
    for (int r = 0; r < n_rot; r++) {
        const int kind = source[2 * r], index = source[2 * r + 1];
        const double *row = grad + (size_t)r * padded;
        if (kind == 0) {
            double sum = 0;
            for (int b = 0; b < batch; b++) sum += row[b];
            grad_weights[index] += sum;
        } else if (kind == 1) {
            for (int b = 0; b < batch; b++) grad_features[(size_t)b * n_features + index] += row[b];
        }
    }
}

/* x with a zero bit inserted at every position of `pos` (ascending): tile index -> base row */
static size_t deposit_bits(size_t v, const int32_t *pos, int m) {
    size_t r = 0;
    for (int j = 0; j < m; j++) r |= ((v >> j) & (size_t)1) << pos[j];
    return r;
}

/* row offsets of a tile's local indices: off[j] has bit S[i] set for every set bit i of j */
static void tile_offsets(size_t *off, const int32_t *S, int k) {
    off[0] = 0;
    for (size_t j = 1; j < ((size_t)1 << k); j++) off[j] = off[j & (j - 1)] | ((size_t)1 << S[__builtin_ctzll(j)]);
}

/* the qubits of 0..n-1 that are not in the ascending list S (k entries), ascending */
static int complement(int32_t *out, const int32_t *S, int k, int n) {
    int m = 0, j = 0;
    for (int q = 0; q < n; q++) {
        if (j < k && S[j] == q) j++;
        else out[m++] = q;
    }
    return m;
}

static int is_prefix(const int32_t *S, int k) {
    for (int j = 0; j < k; j++)
        if (S[j] != j) return 0;
    return 1;
}

/* i runs over the rows whose bit q is 0 (the partner row is i | 1 << q) */
#define LOOP1(rows, q, i, ...)                                                                     \
    do {                                                                                           \
        const size_t bit_ = (size_t)1 << (q);                                                      \
        for (size_t i1_ = 0; i1_ < (rows); i1_ += 2 * bit_)                                        \
            for (size_t i = i1_; i < i1_ + bit_; i++) { __VA_ARGS__ }                              \
    } while (0)

/* i runs over the rows whose bits qa and qb are both 0 */
#define LOOP2(rows, qa, qb, i, ...)                                                                \
    do {                                                                                           \
        const size_t lo_ = (size_t)1 << ((qa) < (qb) ? (qa) : (qb));                               \
        const size_t hi_ = (size_t)1 << ((qa) < (qb) ? (qb) : (qa));                               \
        for (size_t i2_ = 0; i2_ < (rows); i2_ += 2 * hi_)                                         \
            for (size_t i1_ = i2_; i1_ < i2_ + hi_; i1_ += 2 * lo_)                                \
                for (size_t i = i1_; i < i1_ + lo_; i++) { __VA_ARGS__ }                           \
    } while (0)

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#define T float
#define VEC vec_f32
#define PREC f32
#define NV 1
#define SUFFIX f32_nv1
#include "real_gates_impl.h"
#define NV 2
#define SUFFIX f32_nv2
#include "real_gates_impl.h"
#define NV 4
#define SUFFIX f32_nv4
#include "real_gates_impl.h"
#define MASK mask_f32
#define IOTA IOTA_f32
#include "dense_impl.h"
#undef IOTA
#undef MASK
#undef T
#undef VEC
#undef PREC

#define T double
#define VEC vec_f64
#define PREC f64
#define NV 1
#define SUFFIX f64_nv1
#include "real_gates_impl.h"
#define NV 2
#define SUFFIX f64_nv2
#include "real_gates_impl.h"
#define NV 4
#define SUFFIX f64_nv4
#include "real_gates_impl.h"
#define MASK mask_f64
#define IOTA IOTA_f64
#include "dense_impl.h"
#undef IOTA
#undef MASK
#undef T
#undef VEC
#undef PREC
