/* geoae fused kernels: an autoencoder's convolution stacks (any geoae.spec.NetSpec), forward and backward.
 *
 * Compiled on first use by geoae/fused.py (any C99 compiler with GCC vector extensions: GCC or Clang; no
 * Python or torch headers) and called through ctypes; _fused.h is the contract. See fused.py for what this
 * computes and why it is fast.
 *
 * Build-time configuration (chosen per CPU by fused.py's measured autotuning, all give the same results):
 *   GEOAE_LANES  images per block, side by side in one vector (8 or 16)
 *   GEOAE_CHUNK  output channels kept in registers by a convolution pixel (4 or 8)
 *   GEOAE_WG     accumulators of the register-blocked weight gradient (8 or 16)
 *
 * Layout: a *block* is GEOAE_LANES images processed together; an activation with C channels on an
 * H x W grid is stored [H][W][C][lane], so that every multiply-accumulate of a convolution is one vector
 * operation over the lanes (the images), whatever the (tiny) channel count.
 *
 * A layer is out = act(conv(in, w) + b) with a kh x kw kernel whose taps read the input at row
 * rows[i * kh + a] and column cols[j * kw + c] (-1: padding, contributes 0). These index tables express
 * the stride-2 encoder convolution and the decoder's "upsample x2, then convolve" (zero insertion or
 * nearest) with the same loops: taps that fall on inserted zeros are simply absent.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_fused.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#ifndef GEOAE_LANES
#define GEOAE_LANES 16
#endif
#ifndef GEOAE_CHUNK
#define GEOAE_CHUNK 8
#endif
#ifndef GEOAE_WG
#define GEOAE_WG 16
#endif
#if GEOAE_CHUNK != 4 && GEOAE_CHUNK != 8
#error "GEOAE_CHUNK must be 4 or 8"
#endif
#define NL GEOAE_LANES

int geoae_abi_version(void) { return GEOAE_ABI_VERSION; }
int geoae_layer_size(void) { return (int)sizeof(Layer); }
int geoae_lanes(void) { return NL; }
int geoae_chunk(void) { return GEOAE_CHUNK; }
int geoae_wg_accumulators(void) { return GEOAE_WG; }

static size_t act_size(const Layer *ly, int output) {
    return output ? (size_t)ly->hout * ly->wout * ly->cout * NL : (size_t)ly->hin * ly->win * ly->cin * NL;
}

/* NL floats as one vector value (GCC / Clang vector extension); no alignment is assumed. */
typedef float vf __attribute__((vector_size(NL * sizeof(float)), aligned(sizeof(float)), may_alias));
typedef float vfh __attribute__((vector_size(NL / 2 * sizeof(float)), aligned(sizeof(float)), may_alias));
typedef double vdh __attribute__((vector_size(NL / 2 * sizeof(double)))); /* NL / 2 doubles: one native vector */
#define INLINE static inline __attribute__((always_inline))
typedef int vi __attribute__((vector_size(NL * sizeof(int)), aligned(sizeof(int)), may_alias));
#define V(p) (*(vf *)(p))

/* Lane-wise (positive ? a : b) for the sign of `test` (a bit select: vectorised whatever the compiler). */
INLINE vf select_positive(vf test, vf a, vf b) {
    const vi m = test > (vf){0};
    return (vf)((m & (vi)a) | (~m & (vi)b));
}
#define CHUNK GEOAE_CHUNK /* output channels kept in registers at once */

/* The valid taps of one row (or column) position: n pairs (tap index a, input or output index), each stored
 * premultiplied as offsets, at = index * at_stride into the activation read and wt = a * w_stride into the
 * repacked weights (no multiplication left in the pixel loops). */
#define MAX_TAPS GEOAE_MAX_TAPS
typedef struct {
    int n, wt[MAX_TAPS];
    size_t at[MAX_TAPS];
} Taps;

/* out[p] for p < n_pos: the taps a < k with table[p * k + a] >= 0 (forward: output position -> inputs). */
static void forward_taps(const int *table, int n_pos, int k, size_t at_stride, int w_stride, Taps *out) {
    for (int p = 0; p < n_pos; p++) {
        out[p].n = 0;
        for (int a = 0; a < k; a++)
            if (table[p * k + a] >= 0) {
                out[p].wt[out[p].n] = a * w_stride;
                out[p].at[out[p].n++] = (size_t)table[p * k + a] * at_stride;
            }
    }
}

/* out[r] for r < n_pos: the (tap, output) pairs that read input position r (inverse table, m per tap). */
static void inverse_taps(const int *inv, int n_pos, int k, int m, size_t at_stride, int w_stride, Taps *out) {
    for (int r = 0; r < n_pos; r++) {
        out[r].n = 0;
        for (int a = 0; a < k; a++)
            for (int q = 0; q < m; q++)
                if (inv[(r * k + a) * m + q] >= 0) { /* at most MAX_TAPS: check_layers */
                    out[r].wt[out[r].n] = a * w_stride;
                    out[r].at[out[r].n++] = (size_t)inv[(r * k + a) * m + q] * at_stride;
                }
    }
}

/* The accumulator sets of forward_pixel and input_grad_pixel: zeroed, then summed over the sets
 * (+ bias[k] unless NULL) into out[k * NL], with the layer's epilogue fused into the store (no second pass
 * over the activation): forward, the leaky ReLU (leaky); input gradient, the derivative of the leaky ReLU of
 * the layer below, read from its output (mask: 1 where mask > 0, else alpha; unless NULL). */
INLINE void acc_zero(vf acc[4][CHUNK], const int SETS, const int NC) {
    for (int u = 0; u < SETS; u++)
        for (int k = 0; k < NC; k++) acc[u][k] = (vf){0};
}

INLINE void acc_store(vf acc[4][CHUNK], const int SETS, const int NC, const float *restrict bias,
                      float *restrict out, const int leaky, const float *restrict mask, const float alpha) {
    const vf one = (vf){0} + 1.0f, a = (vf){0} + alpha;
    for (int k = 0; k < NC; k++) {
        vf t = acc[0][k];
        for (int u = 1; u < SETS; u++) t += acc[u][k];
        if (bias) t += bias[k];
        if (leaky) t = select_positive(t, t, alpha * t);
        if (mask) t *= select_positive(V(mask + k * NL), one, a);
        V(out + k * NL) = t;
    }
}

/* One output pixel, output channels [co0, co0 + NC): o = b + sum over taps and input channels of w * in.
 * rt, ct: the valid taps of its row and column. SETS accumulator sets (input channel ci goes to set
 * ci % SETS) keep at least 4 independent multiply-add chains in flight however few output channels. */
INLINE void forward_pixel(const Layer *ly, const float *restrict in, float *restrict o, const Taps *rt,
                          const Taps *ct, int co0, const int NC, const float *restrict bias, const int leaky) {
    const int CI = ly->cin, CO = ly->cout;
    const int SETS = NC >= 4 ? 1 : 4 / NC;
    vf acc[4][CHUNK];
    acc_zero(acc, SETS, NC);
    for (int p = 0; p < rt->n; p++) {
        const float *restrict row = in + rt->at[p], *restrict wrow = ly->wf + rt->wt[p] + co0;
        for (int q = 0; q < ct->n; q++) {
            const float *restrict src = row + ct->at[q];
            const float *restrict w = wrow + ct->wt[q]; /* w[ci * CO + k] */
            int ci = 0;
            for (; ci + SETS <= CI; ci += SETS)
                for (int u = 0; u < SETS; u++) {
                    const vf x = V(src + (ci + u) * NL);
                    for (int k = 0; k < NC; k++) acc[u][k] += w[(ci + u) * CO + k] * x;
                }
            /* the CI % SETS < 4 channels left, to sets 0, 1, 2 by constant index (a variable index would
             * keep the accumulators in memory: measured 4x slower for one output channel on AVX2) */
            for (int u = 0; u < 3; u++) {
                if (ci >= CI) break;
                const vf x = V(src + ci * NL);
                for (int k = 0; k < NC; k++) acc[u][k] += w[ci * CO + k] * x;
                ci++;
            }
        }
    }
    acc_store(acc, SETS, NC, bias ? bias + co0 : NULL, o + co0 * NL, leaky, NULL, ly->alpha);
}

/* Input gradient of one input pixel (r, s), input channels [ci0, ci0 + NC), in gather form: the sum over
 * the taps (a, c) and the outputs (i, j) that read (r, s) through them (inverse tables) of w * g[i, j].
 * Written once (no read-modify-write); SETS accumulator sets over the output channels, as in forward_pixel. */
INLINE void input_grad_pixel(const Layer *ly, const float *restrict g, float *restrict gin, int r, int s,
                             const Taps *rt, const Taps *ct, int ci0, const int NC, const float *restrict mask,
                             const float alpha) {
    const int CI = ly->cin, CO = ly->cout;
    const int SETS = NC >= 4 ? 1 : 4 / NC;
    vf acc[4][CHUNK];
    acc_zero(acc, SETS, NC);
    for (int pa = 0; pa < rt->n; pa++) {
        const float *restrict row = g + rt->at[pa], *restrict wrow = ly->wi + rt->wt[pa] + ci0;
        for (int pc = 0; pc < ct->n; pc++) {
            const float *restrict go = row + ct->at[pc];
            const float *restrict w = wrow + ct->wt[pc]; /* w[co * CI + k] */
            int co = 0;
            for (; co + SETS <= CO; co += SETS)
                for (int u = 0; u < SETS; u++) {
                    const vf gv = V(go + (co + u) * NL);
                    for (int k = 0; k < NC; k++) acc[u][k] += w[(co + u) * CI + k] * gv;
                }
            for (int u = 0; u < 3; u++) { /* the CO % SETS channels left, as in forward_pixel */
                if (co >= CO) break;
                const vf gv = V(go + co * NL);
                for (int k = 0; k < NC; k++) acc[u][k] += w[co * CI + k] * gv;
                co++;
            }
        }
    }
    const size_t at = (((size_t)r * ly->win + s) * CI + ci0) * NL;
    acc_store(acc, SETS, NC, NULL, gin + at, 0, mask ? mask + at : NULL, alpha);
}

/* Weight gradient of tap (a, c) over output row i, for output channels [co0, co0 + NC) and input channels
 * [ci0, ci0 + NCI): the sum over the n (j, s = cols(j, c)) pairs of g[i, j, co] * in[r, s, ci], an outer
 * product accumulated in NC x NCI registers (each g and x loaded once), then added to gw once. */
INLINE void weight_grad_row(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gw,
                            int i, int r, int a, int c, int ci0, int co0, const int *restrict js,
                            const int *restrict ss, int n, const int NC, const int NCI) {
    const int CI = ly->cin, CO = ly->cout, KW = ly->kw, T = ly->kh * KW;
    vf acc[CHUNK][CHUNK];
    for (int k = 0; k < NC; k++)
        for (int q = 0; q < NCI; q++) acc[k][q] = (vf){0};
    const float *restrict src = in + (size_t)r * ly->win * CI * NL + ci0 * NL;
    const float *restrict go = g + (size_t)i * ly->wout * CO * NL + co0 * NL;
    for (int p = 0; p < n; p++) {
        const float *restrict xs = src + (size_t)ss[p] * CI * NL, *restrict gj = go + (size_t)js[p] * CO * NL;
        vf x[CHUNK];
        for (int q = 0; q < NCI; q++) x[q] = V(xs + q * NL);
        for (int k = 0; k < NC; k++) {
            const vf gk = V(gj + k * NL);
            for (int q = 0; q < NCI; q++) acc[k][q] += gk * x[q];
        }
    }
    for (int k = 0; k < NC; k++)
        for (int q = 0; q < NCI; q++) V(gw + ((size_t)((co0 + k) * CI + ci0 + q) * T + a * KW + c) * NL) += acc[k][q];
}

/* weight_grad_row over all output and input channels, in blocks of NC x NCI <= 16 accumulators. */
#define WG_NCI(nc, nci) weight_grad_row(ly, in, g, gw, i, r, a, c, ci0, co0, js, ss, n, nc, nci)
#define WG_NC(nc)                                                                                         \
    case nc:                                                                                              \
        for (int ci0 = 0; ci0 < CI;) {                                                                    \
            const int left = CI - ci0, cap = GEOAE_WG / nc;                                                    \
            if (left >= 8 && cap >= 8) { WG_NCI(nc, 8); ci0 += 8; }                                       \
            else if (left >= 4 && cap >= 4) { WG_NCI(nc, 4); ci0 += 4; }                                 \
            else if (left >= 2 && cap >= 2) { WG_NCI(nc, 2); ci0 += 2; }                                 \
            else { WG_NCI(nc, 1); ci0 += 1; }                                                             \
        }                                                                                                 \
        break;

/* Output channels per accumulator block: CHUNK with 32 vector registers (AVX-512); 4 with 16 (AVX2), where 8 x 2
 * accumulators and their 10 operands spilled (measured slower). */
#if NL >= 16 || CHUNK == 4
#define WG_CO CHUNK
#else
#define WG_CO 4
#endif
static void weight_grad_rows(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gw,
                             int i, int r, int a, int c, const int *restrict js, const int *restrict ss, int n) {
    const int CI = ly->cin, CO = ly->cout;
    for (int co0 = 0; co0 < CO; co0 += WG_CO) {
        switch (CO - co0 < WG_CO ? CO - co0 : WG_CO) {
#if WG_CO == 8
            WG_NC(1) WG_NC(2) WG_NC(3) WG_NC(4) WG_NC(5) WG_NC(6) WG_NC(7) default: WG_NC(8)
#else
            WG_NC(1) WG_NC(2) WG_NC(3) default: WG_NC(4)
#endif
        }
    }
}

/* Weight gradients of a 3-tap-wide kernel, the three column taps c at once (TAPS3): for output row i and row tap a
 * (input row r), output channels [co0, co0 + NC) and input channels [ci0, ci0 + NCI), acc[c][k][q] = the sum,
 * over the outputs j in increasing order, of g[i, j, co0 + k] * in[r, cols(j, c), ci0 + q]: per tap c the sum of
 * weight_grad_row, term for term in the same order, then added to gw once, as there. Sharing the loads across the
 * three taps: `by_input` 0 walks the output columns j (one g load, then each tap's x: a stride-2 convolution,
 * where every j reads three columns); 1 walks the input columns s and, for each tap c, the output j = icols(s, c)
 * that reads s through c (one x load, then each tap's g: an upsampling convolution, where each j reads one or two
 * columns but each s is read by three outputs); that order is j's for every c where j increases with s, which
 * taps3_by_input checks. Used where the layer has one input or one output channel: there weight_grad_row loads a
 * vector per multiply-add (9 loads for 8), and sharing them across the taps measured 30 % faster; with more
 * channels on both sides its register blocking already reuses each load and the three taps' accumulators left
 * fewer registers for it (measured slower). */
INLINE void weight_grad_taps3(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gw,
                              int i, int r, int a, int ci0, int co0, const int by_input, const int NC, const int NCI) {
    const int CI = ly->cin, CO = ly->cout, T = ly->kh * 3;
    vf acc[3][8][8];
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < NC; k++)
            for (int q = 0; q < NCI; q++) acc[c][k][q] = (vf){0};
    const float *restrict src = in + (size_t)r * ly->win * CI * NL + ci0 * NL;
    const float *restrict go = g + (size_t)i * ly->wout * CO * NL + co0 * NL;
    if (!by_input) {
        for (int j = 0; j < ly->wout; j++) {
            const int *restrict sc = ly->cols + j * 3;
            vf gk[8];
            for (int k = 0; k < NC; k++) gk[k] = V(go + (size_t)j * CO * NL + k * NL);
            for (int c = 0; c < 3; c++) {
                if (sc[c] < 0) continue;
                const float *restrict xs = src + (size_t)sc[c] * CI * NL;
                for (int q = 0; q < NCI; q++) {
                    const vf x = V(xs + q * NL);
                    for (int k = 0; k < NC; k++) acc[c][k][q] += gk[k] * x;
                }
            }
        }
    } else {
        for (int s = 0; s < ly->win; s++) {
            const int *restrict jc = ly->icols + s * 3; /* mc == 1: one output per (s, c) */
            vf x[8];
            for (int q = 0; q < NCI; q++) x[q] = V(src + (size_t)s * CI * NL + q * NL);
            for (int c = 0; c < 3; c++) {
                if (jc[c] < 0) continue;
                const float *restrict gj = go + (size_t)jc[c] * CO * NL;
                for (int k = 0; k < NC; k++) {
                    const vf gv = V(gj + k * NL);
                    for (int q = 0; q < NCI; q++) acc[c][k][q] += gv * x[q];
                }
            }
        }
    }
    for (int k = 0; k < NC; k++)
        for (int q = 0; q < NCI; q++)
            for (int c = 0; c < 3; c++)
                V(gw + ((size_t)((co0 + k) * CI + ci0 + q) * T + a * 3 + c) * NL) += acc[c][k][q];
}

/* Whether TAPS3 may walk the input columns: one output per (input column, tap), increasing with the column for
 * every tap, each (j, s, c) of cols found in icols; and whether that costs fewer loads (per output channel and
 * input channel: wout + pairs x-vector loads walking j against win + pairs g-vector loads walking s, weighted). */
static int taps3_by_input(const Layer *ly) {
    if (ly->mc != 1) return 0;
    long pairs = 0;
    for (int c = 0; c < 3; c++) {
        int last = -1;
        for (int s = 0; s < ly->win; s++) {
            const int j = ly->icols[s * 3 + c];
            if (j < 0) continue;
            if (j <= last || j >= ly->wout || ly->cols[j * 3 + c] != s) return 0;
            last = j;
            pairs++;
        }
        for (int j = 0; j < ly->wout; j++) /* every pair of cols is in icols */
            if (ly->cols[j * 3 + c] >= 0 && ly->icols[ly->cols[j * 3 + c] * 3 + c] != j) return 0;
    }
    const long by_output = (long)ly->wout * ly->cout + pairs * ly->cin, by_input = (long)ly->win * ly->cin + pairs * ly->cout;
    return by_input < by_output;
}

/* Registers for TAPS3's accumulators: 3 x NC x NCI of them, NC x NCI <= TAPS3_BUDGET (32 vector registers with
 * AVX-512, 16 with AVX2). */
#define TAPS3_BUDGET (NL >= 16 ? 8 : 4)
#define WGT(nc, nci)                                                                                          \
    static __attribute__((noinline)) void weight_grad_taps3_##nc##_##nci(                                     \
        const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gw, int i, int r,  \
        int a, int ci0, int co0, int by_input) {                                                               \
        if (by_input) weight_grad_taps3(ly, in, g, gw, i, r, a, ci0, co0, 1, nc, nci);                         \
        else weight_grad_taps3(ly, in, g, gw, i, r, a, ci0, co0, 0, nc, nci);                                  \
    }
WGT(1, 1) WGT(1, 2) WGT(1, 4) WGT(2, 1) WGT(2, 2) WGT(4, 1)
#if NL >= 16
WGT(1, 8) WGT(2, 4) WGT(4, 2) WGT(8, 1)
#endif

static void weight_grad_rows3(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gw,
                              int i, int r, int a, int by_input) {
    const int CI = ly->cin, CO = ly->cout;
    for (int co0 = 0, nc; co0 < CO; co0 += nc) {
        nc = CO - co0 >= 8 && TAPS3_BUDGET >= 8 ? 8 : CO - co0 >= 4 ? 4 : CO - co0 >= 2 ? 2 : 1;
        for (int ci0 = 0, nci; ci0 < CI; ci0 += nci) {
            const int cap = TAPS3_BUDGET / nc;
            nci = CI - ci0 >= 8 && cap >= 8 ? 8 : CI - ci0 >= 4 && cap >= 4 ? 4 : CI - ci0 >= 2 && cap >= 2 ? 2 : 1;
            switch (nc * 16 + nci) {
#if NL >= 16
            case 1 * 16 + 8: weight_grad_taps3_1_8(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 2 * 16 + 4: weight_grad_taps3_2_4(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 4 * 16 + 2: weight_grad_taps3_4_2(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 8 * 16 + 1: weight_grad_taps3_8_1(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
#endif
            case 1 * 16 + 4: weight_grad_taps3_1_4(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 2 * 16 + 2: weight_grad_taps3_2_2(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 4 * 16 + 1: weight_grad_taps3_4_1(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 1 * 16 + 2: weight_grad_taps3_1_2(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            case 2 * 16 + 1: weight_grad_taps3_2_1(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            default: weight_grad_taps3_1_1(ly, in, g, gw, i, r, a, ci0, co0, by_input); break;
            }
        }
    }
}

#define DISPATCH(count, call)                                                                             \
    for (int c0 = 0; c0 < (count); c0 += CHUNK) {                                                         \
        switch ((count) - c0 < CHUNK ? (count) - c0 : CHUNK) {                                            \
        CASES(call)                                                                                       \
        }                                                                                                 \
    }
#if CHUNK == 8
#define CASES(call) case 1: call(1); break; case 2: call(2); break; case 3: call(3); break;             \
    case 4: call(4); break; case 5: call(5); break; case 6: call(6); break; case 7: call(7); break;     \
    default: call(8); break;
#else
#define CASES(call) case 1: call(1); break; case 2: call(2); break; case 3: call(3); break;             \
    default: call(4); break;
#endif

/* GROUPS. forward_pixel for the G output pixels o[m] of one row whose column taps ct[m] are the same taps (same
 * count, same weight offsets; they read different input columns): each weight is loaded (broadcast) once for the
 * G pixels instead of once per pixel, which halves the loads of a multiply-add where few channels make the loads
 * the bound. Each pixel's sums are forward_pixel's, in the same order. */
INLINE vf splat(float v) { return -(vf){0} + v; } /* v in every lane: -0 is the exact identity of + */

/* GROUPS' multiply-add of channel cc into set u: the NC weights w[cc * WS + k] broadcast once, then each of the
 * G pixels' vector at s0..s3 + cc * NL (acc[m][u * NC + k]). */
#define GROUP_MAC(cc, u, WS)                                                                                \
    do {                                                                                                  \
        vf wk[8];                                                                                         \
        for (int k = 0; k < NC; k++) wk[k] = splat(w[(cc) * (WS) + k]);                                     \
        const vf x0 = V(s0 + (cc) * NL);                                                                  \
        for (int k = 0; k < NC; k++) acc[0][(u) * NC + k] += wk[k] * x0;                                  \
        if (G > 1) {                                                                                      \
            const vf x1 = V(s1 + (cc) * NL);                                                              \
            for (int k = 0; k < NC; k++) acc[1][(u) * NC + k] += wk[k] * x1;                              \
        }                                                                                                 \
        if (G > 2) {                                                                                      \
            const vf x2 = V(s2 + (cc) * NL);                                                              \
            for (int k = 0; k < NC; k++) acc[2][(u) * NC + k] += wk[k] * x2;                              \
        }                                                                                                 \
        if (G > 3) {                                                                                      \
            const vf x3 = V(s3 + (cc) * NL);                                                              \
            for (int k = 0; k < NC; k++) acc[3][(u) * NC + k] += wk[k] * x3;                              \
        }                                                                                                 \
    } while (0)

INLINE void forward_group(const Layer *ly, const float *restrict in, float *const o[], const Taps *rt,
                          const Taps *const ct[], int co0, const int NC, const int G, const float *restrict bias,
                          const int leaky) {
    const int CI = ly->cin, CO = ly->cout;
    const int SETS = NC >= 4 ? 1 : 4 / NC;
    vf acc[4][8]; /* pixel m, set u, channel k: acc[m][u * NC + k] (SETS * NC <= 8), small enough for registers */
    for (int m = 0; m < G; m++)
        for (int e = 0; e < SETS * NC; e++) acc[m][e] = (vf){0};
    for (int p = 0; p < rt->n; p++) {
        const float *restrict row = in + rt->at[p], *restrict wrow = ly->wf + rt->wt[p] + co0;
        for (int q = 0; q < ct[0]->n; q++) {
            const float *restrict w = wrow + ct[0]->wt[q]; /* w[ci * CO + k] */
            const float *restrict s0 = row + ct[0]->at[q], *restrict s1 = row + ct[G > 1]->at[q],
                                  *restrict s2 = row + ct[G > 2 ? 2 : 0]->at[q], *restrict s3 = row + ct[G > 3 ? 3 : 0]->at[q];
            int ci = 0;
            for (; ci + SETS <= CI; ci += SETS)
                for (int u = 0; u < SETS; u++) GROUP_MAC(ci + u, u, CO);
            for (int u = 0; u < 3; u++) { /* as in forward_pixel */
                if (ci >= CI) break;
                GROUP_MAC(ci, u, CO);
                ci++;
            }
        }
    }
    for (int m = 0; m < G; m++) /* acc_store's sums, in its order */
        for (int k = 0; k < NC; k++) {
            vf t = acc[m][k];
            for (int u = 1; u < SETS; u++) t += acc[m][u * NC + k];
            if (bias) t += bias[co0 + k];
            if (leaky) t = select_positive(t, t, ly->alpha * t);
            V(o[m] + (co0 + k) * NL) = t;
        }
}

/* Whether two positions' taps are the same taps (count and weight offsets). */
INLINE int same_taps(const Taps *a, const Taps *b) {
    if (a->n != b->n) return 0;
    for (int q = 0; q < a->n; q++)
        if (a->wt[q] != b->wt[q]) return 0;
    return 1;
}

/* The next group from column j (not yet done): j and the columns d apart with the same taps (d = 1, or 2 where the
 * taps alternate from column to column), G of them, or j alone where fewer are found; marked done, listed in js.
 * Returns how many. */
INLINE int next_group(const Taps *ct, int W, char *done, int j, int G, int js[4]) {
    const int d = j + 1 < W && same_taps(&ct[j], &ct[j + 1]) ? 1 : 2;
    int m = 1;
    while (m < G && j + m * d < W && !done[j + m * d] && same_taps(&ct[j], &ct[j + m * d])) m++;
    if (m < G) m = 1;
    for (int g = 0; g < m; g++) {
        js[g] = j + g * d;
        done[js[g]] = 1;
    }
    return m;
}

/* Pixels per group for n output channels: G x max(4, n) accumulators and n weights in registers (32 vector
 * registers with AVX-512, 16 with AVX2). */
#define GROUP_OF(n) (NL >= 16 ? ((n) <= 4 ? 4 : 1) : ((n) <= 4 ? 2 : 1))

/* One output row (rt: its taps), output channels [c0, c0 + n), every column: a function per n, so that the
 * compiler allocates registers for this loop nest alone (inlined into conv_forward, the loops of the eight
 * cases shared its registers and kept their pointers on the stack: ~20 instructions of bookkeeping a tap). */
#define FORWARD_ROW(n)                                                                                    \
    static __attribute__((noinline)) void forward_row_##n(const Layer *ly, const float *restrict in,       \
                                                          float *restrict row, const Taps *rt,             \
                                                          const Taps *ct, int c0, const float *restrict bias, \
                                                          const int leaky) {                               \
        const size_t step = (size_t)ly->cout * NL;                                                        \
        const int W = ly->wout, G = GROUP_OF(n);                                                          \
        if (G == 1) {                                                                                     \
            for (int j = 0; j < W; j++) forward_pixel(ly, in, row + j * step, rt, &ct[j], c0, n, bias, leaky); \
            return;                                                                                       \
        }                                                                                                 \
        char done[W];                                                                                     \
        memset(done, 0, (size_t)W);                                                                       \
        for (int j = 0, js[4]; j < W; j++) {                                                              \
            if (done[j]) continue;                                                                        \
            if (next_group(ct, W, done, j, G, js) == G) {                                                 \
                float *o[4];                                                                              \
                const Taps *cg[4];                                                                        \
                for (int g = 0; g < G; g++) {                                                             \
                    o[g] = row + (size_t)js[g] * step;                                                    \
                    cg[g] = &ct[js[g]];                                                                   \
                }                                                                                         \
                forward_group(ly, in, o, rt, cg, c0, n, GROUP_OF(n), bias, leaky);                        \
            } else {                                                                                      \
                forward_pixel(ly, in, row + j * step, rt, &ct[j], c0, n, bias, leaky);                    \
            }                                                                                             \
        }                                                                                                 \
    }
FORWARD_ROW(1)
FORWARD_ROW(2)
FORWARD_ROW(3)
FORWARD_ROW(4)
#if CHUNK == 8
FORWARD_ROW(5)
FORWARD_ROW(6)
FORWARD_ROW(7)
FORWARD_ROW(8)
#endif

/* out = conv(in, w) (+ b if bias), then the leaky ReLU if leaky. */
static void conv_forward(const Layer *ly, const float *restrict in, float *restrict out, const float *restrict bias,
                         const int leaky) {
    const int CO = ly->cout;
    Taps rt[ly->hout], ct[ly->wout];
    const size_t pixel = (size_t)ly->cin * NL; /* an input pixel's floats; a tap's weights: cin * cout */
    forward_taps(ly->rows, ly->hout, ly->kh, ly->win * pixel, ly->kw * ly->cin * CO, rt);
    forward_taps(ly->cols, ly->wout, ly->kw, pixel, ly->cin * CO, ct);
    for (int i = 0; i < ly->hout; i++) {
        float *restrict row = out + (size_t)i * ly->wout * CO * NL;
#define FWD(n) forward_row_##n(ly, in, row, &rt[i], ct, c0, bias, leaky)
        DISPATCH(CO, FWD)
#undef FWD
    }
}

static void layer_forward(const Layer *ly, const float *restrict in, float *restrict out) {
    const int fused = ly->act == ACT_LEAKY && !ly->bm; /* the activation in the convolution's store */
    conv_forward(ly, in, out, ly->b, fused);
    const size_t n = act_size(ly, 1);
    if (ly->bm)
        for (size_t k = 0; k < n / NL; k++) V(out + k * NL) += ly->bm[k];
    if (ly->act == ACT_LEAKY && !fused) {
        const float alpha = ly->alpha;
        for (size_t k = 0; k < n; k += NL) V(out + k) = select_positive(V(out + k), V(out + k), alpha * V(out + k));
    } else if (ly->act == ACT_SIGMOID) {
        for (size_t k = 0; k < n; k++) out[k] = 1.0f / (1.0f + expf(-out[k]));
    }
}

/* g *= act'(pre-activation), from the layer's output `out` (leaky: out > 0 iff pre-activation > 0). */
static void act_backward(const Layer *ly, const float *restrict out, float *restrict g) {
    const size_t n = act_size(ly, 1);
    if (ly->act == ACT_LEAKY) {
        const vf one = (vf){0} + 1.0f, alpha = (vf){0} + ly->alpha;
        for (size_t k = 0; k < n; k += NL) V(g + k) *= select_positive(V(out + k), one, alpha);
    } else if (ly->act == ACT_SIGMOID) {
        for (size_t k = 0; k < n; k++) g[k] *= out[k] * (1.0f - out[k]);
    }
}

/* gb[k] += the sum over the P pixels of g[p][k], for the NK channels k0 <= k < k0 + NK of CO, each in four running
 * sums (pixels p mod 4; the last P mod 4 pixels to the first), combined as (s0 + s1) + (s2 + s3): one pass over
 * the pixels, reading NK neighbouring channel vectors of each (a pass per channel, reading one vector a pixel
 * with a stride of CO vectors, ran at L2 latency). */
INLINE void bias_grad(const float *restrict g, float *restrict gb, size_t P, int CO, int k0, const int NK) {
    const size_t step = (size_t)CO * NL;
    const float *restrict gk = g + (size_t)k0 * NL;
    vf s[4][4];
    for (int u = 0; u < 4; u++)
        for (int k = 0; k < NK; k++) s[u][k] = (vf){0};
    size_t p = 0;
    for (; p + 4 <= P; p += 4)
        for (int u = 0; u < 4; u++)
            for (int k = 0; k < NK; k++) s[u][k] += V(gk + (p + u) * step + k * NL);
    for (; p < P; p++)
        for (int k = 0; k < NK; k++) s[0][k] += V(gk + p * step + k * NL);
    for (int k = 0; k < NK; k++) V(gb + (k0 + k) * NL) += (s[0][k] + s[1][k]) + (s[2][k] + s[3][k]);
}

/* input_grad_pixel for the G input pixels (r, s[m]) of one row with the same column taps, each weight broadcast once
 * for the G pixels (GROUPS); each pixel's sums are input_grad_pixel's, in the same order. */
INLINE void input_grad_group(const Layer *ly, const float *restrict g, float *restrict gin, int r, const int s[],
                             const Taps *rt, const Taps *const ct[], int ci0, const int NC, const int G,
                             const float *restrict mask, const float alpha) {
    const int CI = ly->cin, CO = ly->cout;
    const int SETS = NC >= 4 ? 1 : 4 / NC;
    vf acc[4][8]; /* pixel m, set u, channel k: acc[m][u * NC + k] */
    for (int m = 0; m < G; m++)
        for (int e = 0; e < SETS * NC; e++) acc[m][e] = (vf){0};
    for (int pa = 0; pa < rt->n; pa++) {
        const float *restrict row = g + rt->at[pa], *restrict wrow = ly->wi + rt->wt[pa] + ci0;
        for (int pc = 0; pc < ct[0]->n; pc++) {
            const float *restrict w = wrow + ct[0]->wt[pc]; /* w[co * CI + k] */
            const float *restrict s0 = row + ct[0]->at[pc], *restrict s1 = row + ct[G > 1]->at[pc],
                                  *restrict s2 = row + ct[G > 2 ? 2 : 0]->at[pc], *restrict s3 = row + ct[G > 3 ? 3 : 0]->at[pc];
            int co = 0;
            for (; co + SETS <= CO; co += SETS)
                for (int u = 0; u < SETS; u++) GROUP_MAC(co + u, u, CI);
            for (int u = 0; u < 3; u++) { /* as in input_grad_pixel */
                if (co >= CO) break;
                GROUP_MAC(co, u, CI);
                co++;
            }
        }
    }
    const vf one = (vf){0} + 1.0f, a = (vf){0} + alpha;
    for (int m = 0; m < G; m++) { /* acc_store's sums and mask, in its order */
        const size_t at = (((size_t)r * ly->win + s[m]) * CI + ci0) * NL;
        for (int k = 0; k < NC; k++) {
            vf t = acc[m][k];
            for (int u = 1; u < SETS; u++) t += acc[m][u * NC + k];
            if (mask) t *= select_positive(V(mask + at + k * NL), one, a);
            V(gin + at + k * NL) = t;
        }
    }
}

/* One input row r of the input gradient, input channels [c0, c0 + n), every column: a function per n, as
 * FORWARD_ROW (groups as there). */
#define INPUT_GRAD_ROW(n)                                                                                 \
    static __attribute__((noinline)) void input_grad_row_##n(const Layer *ly, const float *restrict g,     \
                                                             float *restrict gin, int r, const Taps *rt,   \
                                                             const Taps *ct, int c0,                       \
                                                             const float *restrict mask, float alpha) {    \
        const int W = ly->win, G = GROUP_OF(n);                                                           \
        if (G == 1) {                                                                                     \
            for (int s = 0; s < W; s++) input_grad_pixel(ly, g, gin, r, s, rt, &ct[s], c0, n, mask, alpha); \
            return;                                                                                       \
        }                                                                                                 \
        char done[W];                                                                                     \
        memset(done, 0, (size_t)W);                                                                       \
        for (int s = 0, sg[4]; s < W; s++) {                                                              \
            if (done[s]) continue;                                                                        \
            if (next_group(ct, W, done, s, G, sg) == G) {                                                 \
                const Taps *cg[4];                                                                        \
                for (int q = 0; q < G; q++) cg[q] = &ct[sg[q]];                                           \
                input_grad_group(ly, g, gin, r, sg, rt, cg, c0, n, GROUP_OF(n), mask, alpha);             \
            } else {                                                                                      \
                input_grad_pixel(ly, g, gin, r, s, rt, &ct[s], c0, n, mask, alpha);                       \
            }                                                                                             \
        }                                                                                                 \
    }
INPUT_GRAD_ROW(1)
INPUT_GRAD_ROW(2)
INPUT_GRAD_ROW(3)
INPUT_GRAD_ROW(4)
#if CHUNK == 8
INPUT_GRAD_ROW(5)
INPUT_GRAD_ROW(6)
INPUT_GRAD_ROW(7)
INPUT_GRAD_ROW(8)
#endif

/* Adjoint of conv_forward for the pre-activation gradient g: gin (overwritten) = conv^T(g) unless NULL, times
 * the leaky ReLU derivative of the layer `below` (whose output is `in`) if below is not NULL and leaky (gin is
 * then the gradient of below's pre-activation); gw, gb, gm (unless NULL) accumulate per-lane weight, bias and
 * bias-map gradients: gw[(co, ci, a, c)][lane], gb[co][lane], gm[(i, j, co)][lane]. */
static void conv_backward(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gin,
                          float *restrict gw, float *restrict gb, float *restrict gm, const Layer *below) {
    const int masked = below && in && below->act == ACT_LEAKY;
    const float *restrict mask = masked ? in : NULL;
    const float alpha = masked ? below->alpha : 0.0f;
    const int CO = ly->cout;
    if (gm)
        for (size_t k = 0; k < act_size(ly, 1) / NL; k++) V(gm + k * NL) += V(g + k * NL);
    if (gb) /* per output channel, four running sums over the pixels (p mod 4) kept in registers */
        for (int k0 = 0; k0 < CO; k0 += 4) {
            switch (CO - k0 < 4 ? CO - k0 : 4) {
            case 1: bias_grad(g, gb, (size_t)ly->hout * ly->wout, CO, k0, 1); break;
            case 2: bias_grad(g, gb, (size_t)ly->hout * ly->wout, CO, k0, 2); break;
            case 3: bias_grad(g, gb, (size_t)ly->hout * ly->wout, CO, k0, 3); break;
            default: bias_grad(g, gb, (size_t)ly->hout * ly->wout, CO, k0, 4); break;
            }
        }
    if (gin) {
        const int CI = ly->cin;
        Taps rt[ly->hin], ct[ly->win];
        const size_t pixel = (size_t)CO * NL; /* an output pixel's floats; a tap's weights: cout * cin */
        inverse_taps(ly->irows, ly->hin, ly->kh, ly->mr, ly->wout * pixel, ly->kw * CO * CI, rt);
        inverse_taps(ly->icols, ly->win, ly->kw, ly->mc, pixel, CO * CI, ct);
        for (int r = 0; r < ly->hin; r++) {
#define IGR(n) input_grad_row_##n(ly, g, gin, r, &rt[r], ct, c0, mask, alpha)
            DISPATCH(CI, IGR)
#undef IGR
        }
    }
    if (gw && ly->kw == 3 && (ly->cin == 1 || ly->cout == 1)) { /* TAPS3 */
        const int by_input = taps3_by_input(ly);
        for (int i = 0; i < ly->hout; i++)
            for (int a = 0; a < ly->kh; a++) {
                const int r = ly->rows[i * ly->kh + a];
                if (r >= 0) weight_grad_rows3(ly, in, g, gw, i, r, a, by_input);
            }
    } else if (gw) {
        const int KW = ly->kw, WO = ly->wout;
        int js[KW][WO], ss[KW][WO], n[KW]; /* per column tap c: the outputs j that read a column, and which */
        for (int c = 0; c < KW; c++) {
            n[c] = 0;
            for (int j = 0; j < WO; j++)
                if (ly->cols[j * KW + c] >= 0) {
                    js[c][n[c]] = j;
                    ss[c][n[c]++] = ly->cols[j * KW + c];
                }
        }
        for (int i = 0; i < ly->hout; i++)
            for (int a = 0; a < ly->kh; a++) {
                const int r = ly->rows[i * ly->kh + a];
                if (r < 0) continue;
                for (int c = 0; c < KW; c++) weight_grad_rows(ly, in, g, gw, i, r, a, c, js[c], ss[c], n[c]);
            }
    }
}

/* g: on entry the gradient w.r.t. the layer's output (or, if pre, already w.r.t. its pre-activation), turned in
 * place into the gradient w.r.t. the pre-activation; then conv_backward (gin: w.r.t. below's pre-activation
 * where below's derivative can be fused, see conv_backward). Returns whether gin is a pre-activation gradient. */
static int layer_backward(const Layer *ly, const float *restrict in, const float *restrict out, float *restrict g,
                          float *restrict gin, float *restrict gw, float *restrict gb, float *restrict gm,
                          const Layer *below, const int pre) {
    if (!pre) act_backward(ly, out, g);
    conv_backward(ly, in, g, gin, gw, gb, gm, below);
    return below && gin && below->act == ACT_LEAKY;
}

/* ------------------------------------------------------------------------------------- stacks */

/* Coefficients of a layer, in the order of their gradients: w, then b, then bm (where present). */
static size_t coef_count(const Layer *ly) {
    return (size_t)ly->cout * ly->cin * ly->kh * ly->kw + (ly->b ? (size_t)ly->cout : 0) +
           (ly->bm ? (size_t)ly->hout * ly->wout * ly->cout : 0);
}

static size_t largest_block(const Layer *layers, int n) {
    size_t biggest = act_size(&layers[n - 1], 1);
    for (int k = 0; k < n; k++)
        if (act_size(&layers[k], 0) > biggest) biggest = act_size(&layers[k], 0);
    return biggest;
}

/* (B, C, H, W) images [blk * NL, blk * NL + NL) <-> one block [H][W][C][lane] (missing images: 0 in the
 * block, not written back); to_block reads image index[b] of src as image b where index is not NULL. */

/* An NL x NL transpose in registers, in log2(NL) stages: the stage of width b swaps bit b of the row and column
 * indices, rows i and i + b exchanging the blocks of b columns where they differ (two two-source shuffles). */
#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
#endif
#define TSTAGE(b, LO, HI)                                                                                 \
    for (int i = 0; i < NL; i++)                                                                          \
        if (!(i & (b))) {                                                                                 \
            const vf lo = SHUFFLE(r[i], r[i + (b)], LO), hi = SHUFFLE(r[i], r[i + (b)], HI);              \
            r[i] = lo;                                                                                    \
            r[i + (b)] = hi;                                                                              \
        }
#define TLO16_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define THI16_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define TLO16_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define THI16_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define TLO16_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define THI16_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define TLO16_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define THI16_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define TLO8_4 0, 1, 2, 3, 8, 9, 10, 11
#define THI8_4 4, 5, 6, 7, 12, 13, 14, 15
#define TLO8_2 0, 1, 8, 9, 4, 5, 12, 13
#define THI8_2 2, 3, 10, 11, 6, 7, 14, 15
#define TLO8_1 0, 8, 2, 10, 4, 12, 6, 14
#define THI8_1 1, 9, 3, 11, 5, 13, 7, 15
INLINE void transpose(vf r[NL]) { /* r[w][l] = (r[l][w] on entry) */
#if NL == 16
    TSTAGE(8, TLO16_8, THI16_8)
    TSTAGE(4, TLO16_4, THI16_4)
    TSTAGE(2, TLO16_2, THI16_2)
    TSTAGE(1, TLO16_1, THI16_1)
#elif NL == 8
    TSTAGE(4, TLO8_4, THI8_4)
    TSTAGE(2, TLO8_2, THI8_2)
    TSTAGE(1, TLO8_1, THI8_1)
#else
#error "GEOAE_LANES must be 8 or 16"
#endif
}

static void to_block(const float *restrict src, const long long *index, int batch, int blk, int C, int H, int W,
                     float *restrict dst) {
    const size_t n = (size_t)C * H * W;
    const float *rows[NL]; /* each lane's image (NULL: padding) */
    for (int l = 0; l < NL; l++) {
        const int b = blk * NL + l;
        rows[l] = b < batch ? src + (size_t)(index ? index[b] : b) * n : NULL;
    }
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            const size_t at = ((size_t)c * H + h) * W;
            int w0 = 0;
            for (; w0 + NL <= W; w0 += NL) { /* NL samples of every lane's row, transposed in registers */
                vf r[NL];
                for (int l = 0; l < NL; l++) r[l] = rows[l] ? V(rows[l] + at + w0) : (vf){0};
                transpose(r);
                for (int w = 0; w < NL; w++) V(dst + (((size_t)h * W + w0 + w) * C + c) * NL) = r[w];
            }
            for (int w = w0; w < W; w++) { /* the row's last W % NL samples */
                float *restrict d = dst + (((size_t)h * W + w) * C + c) * NL;
                for (int l = 0; l < NL; l++) d[l] = rows[l] ? rows[l][at + w] : 0.0f;
            }
        }
}

#define TILE 16 /* from_block: columns per tile (each lane's row read contiguously) */

static void from_block(const float *restrict src, int batch, int blk, int C, int H, int W, float *restrict dst) {
    const size_t n = (size_t)C * H * W;
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++)
            for (int w0 = 0; w0 < W; w0 += TILE) {
                const int w1 = w0 + TILE < W ? w0 + TILE : W;
                for (int l = 0; l < NL && blk * NL + l < batch; l++) {
                    float *restrict d = dst + (size_t)(blk * NL + l) * n + ((size_t)c * H + h) * W;
                    const float *restrict s = src + ((size_t)h * W * C + c) * NL + l;
                    for (int w = w0; w < w1; w++) d[w] = s[(size_t)w * C * NL];
                }
            }
}

/* One block through a stack: acts[k] + slot * size(k) is activation k of the block (acts[0] must hold it). */
static void stack_forward_block(const Layer *layers, int n, float *const *acts, int slot) {
    for (int k = 0; k < n; k++) {
        const Layer *ly = &layers[k];
        layer_forward(ly, acts[k] + slot * act_size(ly, 0), acts[k + 1] + slot * act_size(ly, 1));
    }
}

static size_t total_coefs(const Layer *layers, int n) {
    size_t total = 0;
    for (int k = 0; k < n; k++) total += coef_count(&layers[k]);
    return total;
}

/* Backward of one block: g (overwritten) holds the output gradient; the input gradient goes to gin (or
 * nowhere if NULL); per-lane coefficient gradients go to gacc (coefs * NL floats, overwritten); tmp holds
 * 2 x the largest activation. */
static void stack_backward_block(const Layer *layers, int n, float *const *acts, int slot, float *g, float *gin,
                                 float *gacc, float *tmp, int pre) {
    const size_t biggest = largest_block(layers, n);
    float *cur = g, *bufs[2] = {tmp, tmp + biggest};
    memset(gacc, 0, total_coefs(layers, n) * NL * sizeof(float));
    size_t offset = total_coefs(layers, n);
    /* pre: cur is already the gradient of layer k's pre-activation (fused in layer k + 1's store; for the top
     * layer, as the caller says) */
    for (int k = n - 1; k >= 0; k--) {
        const Layer *ly = &layers[k];
        float *next = k > 0 ? bufs[k % 2] : gin;
        offset -= coef_count(ly);
        float *gw = gacc + offset * NL;
        const size_t nw = (size_t)ly->cout * ly->cin * ly->kh * ly->kw;
        const size_t nb = ly->b ? (size_t)ly->cout : 0;
        pre = layer_backward(ly, acts[k] + slot * act_size(ly, 0), acts[k + 1] + slot * act_size(ly, 1), cur, next, gw,
                             ly->b ? gw + nw * NL : NULL, ly->bm ? gw + (nw + nb) * NL : NULL,
                             k > 0 ? &layers[k - 1] : NULL, pre);
        cur = next;
    }
}

typedef struct {
    const Layer *enc, *dec; /* the encoder and the decoder (dec reads enc's last activation, the code) */
    int n_enc, n_dec, batch, b0, b1;
    int train_enc;          /* backward: 0 skips the encoder (frozen hand-crafted weights) */
    const float *x;         /* input (B, C, H, W), or the training set that index selects from */
    const long long *index; /* NULL, or the batch's images: image b is x's image index[b] */
    float *y;               /* the code z (B, d) */
    float *const *acts_e, *const *acts_d;
    const float *gy;        /* backward: gradient of z (may be NULL) */
    float gscale;           /* backward: d loss / d x_hat = gscale * (x_hat - x) */
    double *sse;            /* forward: per block sum of squared errors */
    float *scratch;         /* this thread's 4 x largest block activation */
    float *gacc_e, *gacc_d; /* backward: per block, per lane coefficient gradients */
    /* the contractive penalty (autoencoder only; vbuf NULL: not computed) */
    float *const *vbuf;     /* vbuf[l]: per block and code dimension k, the pre-activation gradient of
                               z_k at encoder layer l (n_blocks * d * size of layer l's output) */
    float *u0;              /* per block and k: dz_k/dx in block layout (n_blocks * d * size of x) */
    double *pen;            /* forward: per block sum over images, pixels and k of (dz_k/dx)^2 */
    float cscale;           /* backward: d loss / d (dz_k/dx) = cscale * dz_k/dx */
    int local, slot;        /* local: the activations of block blk (and its contractive vbuf, u0) are at slot
                               `slot` of acts_e / acts_d (one block's worth per thread, reused block after block),
                               else at slot blk */
} Job;

/* Where block blk's activations are: their slot in acts_e / acts_d. */
static int act_slot(const Job *j, int blk) { return j->local ? j->slot : blk; }

#define IN_SIZE(ly) ((ly)->cin * (ly)->hin * (ly)->win)

/* Per image (lane) of a block, the sum over its n_px pixels of (a - b)^2 (b NULL: a^2), in double, with two
 * accumulators (even and odd pixels), added to out[lane] for the first `lanes` lanes. Per-image sums keep every
 * total independent of the block width: totals are summed over images in their order (sum_images). */
INLINE void widen(vf d, vdh *lo, vdh *hi) {
    vfh l, h; /* converted in halves of the native width: a whole vd is twice as wide and compilers spill it */
    memcpy(&l, &d, sizeof l);
    memcpy(&h, (const char *)&d + sizeof l, sizeof h);
    *lo = __builtin_convertvector(l, vdh);
    *hi = __builtin_convertvector(h, vdh);
}

/* grads[q] = sum over blocks, then lanes, of gacc[blk][q][lane], in double: a fixed order. NL coefficients at a
 * time, one per lane of two double vectors: each block's NL x NL tile (coefficients x lanes) is transposed in
 * registers and its lanes added one after the other, so every coefficient's sum takes the same terms in the same
 * order as one sum after another would (a scalar chain per coefficient was latency-bound: ~4 cycles an add). */
static void reduce_coefs(const float *gacc, size_t total, int n_blocks, float *grads) {
    size_t q0 = 0;
    for (; q0 + NL <= total; q0 += NL) {
        vdh lo = {0}, hi = {0}, a, b;
        for (int blk = 0; blk < n_blocks; blk++) {
            vf r[NL];
            for (int i = 0; i < NL; i++) r[i] = V(gacc + ((size_t)blk * total + q0 + i) * NL);
            transpose(r); /* r[l][i]: coefficient q0 + i, lane l */
            for (int l = 0; l < NL; l++) {
                widen(r[l], &a, &b);
                lo += a;
                hi += b;
            }
        }
        for (int i = 0; i < NL / 2; i++) {
            grads[q0 + i] = (float)lo[i];
            grads[q0 + NL / 2 + i] = (float)hi[i];
        }
    }
    for (size_t q = q0; q < total; q++) {
        double s = 0.0;
        for (int blk = 0; blk < n_blocks; blk++)
            for (int l = 0; l < NL; l++) s += gacc[((size_t)blk * total + q) * NL + l];
        grads[q] = (float)s;
    }
}

INLINE void diff_at(const float *a, const float *b, size_t p, vdh *lo, vdh *hi) {
    vf d = V(a + p * NL);
    if (b) d -= V(b + p * NL);
    widen(d, lo, hi);
}

static void sum_squares(const float *a, const float *b, size_t n_px, int lanes, double *out) {
    vdh s0l = {0}, s0h = {0}, s1l = {0}, s1h = {0}, el, eh;
    size_t p = 0;
    for (; p + 1 < n_px; p += 2) {
        diff_at(a, b, p, &el, &eh);
        s0l += el * el;
        s0h += eh * eh;
        diff_at(a, b, p + 1, &el, &eh);
        s1l += el * el;
        s1h += eh * eh;
    }
    if (p < n_px) {
        diff_at(a, b, p, &el, &eh);
        s0l += el * el;
        s0h += eh * eh;
    }
    for (int l = 0; l < lanes; l++) out[l] += l < NL / 2 ? s0l[l] + s1l[l] : s0h[l - NL / 2] + s1h[l - NL / 2];
}

/* sum_squares(xh, x, ...) and, in the same pass, g = mask * (xh - x) (mask: the NL floats at scale), times the
 * derivative of the output layer's leaky ReLU (read from xh, as act_backward does) where leaky: the same
 * operations in the same order as sum_squares, then the loss-gradient loop of backward_block, then act_backward,
 * the difference xh - x computed once for both. */
static void loss_pass(const float *xh, const float *x, size_t n_px, int lanes, const float *scale, int leaky,
                      float alpha, float *g, double *out) {
    const vf one = (vf){0} + 1.0f, a = (vf){0} + alpha, mask = V(scale);
    vdh s0l = {0}, s0h = {0}, s1l = {0}, s1h = {0}, el, eh;
    size_t p = 0;
#define LOSS_AT(p, lo, hi)                                                                                \
    do {                                                                                                  \
        const vf d = V(xh + (p) * NL) - V(x + (p) * NL);                                                  \
        widen(d, &el, &eh);                                                                               \
        lo += el * el;                                                                                    \
        hi += eh * eh;                                                                                    \
        vf t = mask * d;                                                                                  \
        if (leaky) t *= select_positive(V(xh + (p) * NL), one, a);                                        \
        V(g + (p) * NL) = t;                                                                              \
    } while (0)
    for (; p + 1 < n_px; p += 2) {
        LOSS_AT(p, s0l, s0h);
        LOSS_AT(p + 1, s1l, s1h);
    }
    if (p < n_px) LOSS_AT(p, s0l, s0h);
#undef LOSS_AT
    for (int l = 0; l < lanes; l++) out[l] += l < NL / 2 ? s0l[l] + s1l[l] : s0h[l - NL / 2] + s1h[l - NL / 2];
}

static double sum_images(const double *per_image, int batch) {
    double total = 0.0;
    for (int b = 0; b < batch; b++) total += per_image[b];
    return total;
}

/* Images of block blk that are real (the last block may be padded). */
static int valid_lanes(int batch, int blk) { return batch - blk * NL < NL ? batch - blk * NL : NL; }

/* The largest block activation of the encoder and (unless NULL) the decoder. */
static size_t largest_of(const Layer *enc, int n_enc, const Layer *dec, int n_dec) {
    const size_t e = largest_block(enc, n_enc), d = dec ? largest_block(dec, n_dec) : 0;
    return e > d ? e : d;
}

/* The contractive penalty of the released code, sum_k ||dz_k/dx||^2. The encoder is piecewise linear: with
 * the masks D_l = act'(t_l) of the forward pass (fixed almost everywhere), dz_k/dx = C_1^T D_1 ... C_L^T D_L e_k
 * (C_l the convolution of layer l), computed by a backward pass seeded with e_k; v_l = D_l (...) is kept.
 * Its gradient: with h_0 = cscale * dz_k/dx and h_l = D_l C_l h_{l-1} (a bias-free forward pass with the same
 * masks), d/dw_l = sum over pixels of v_l (x) h_{l-1}, the weight-gradient formula of conv_backward with h
 * in place of the layer input. Biases only move the masks: their gradient is 0. */
static void contractive_forward_block(const Job *j, int blk, float *buf) {
    const Layer *E = j->enc;
    const int n = j->n_enc, d = E[n - 1].cout;
    const size_t big = largest_block(E, n), nx = act_size(&E[0], 0);
    double *pen = j->pen + (size_t)blk * NL;
    for (int l = 0; l < NL; l++) pen[l] = 0.0;
    for (int k = 0; k < d; k++) {
        float *cur = buf;
        memset(cur, 0, act_size(&E[n - 1], 1) * sizeof(float));
        for (int l = 0; l < NL && blk * NL + l < j->batch; l++) cur[k * NL + l] = 1.0f; /* z is 1 x 1 x d */
        for (int q = n - 1; q >= 0; q--) {
            const Layer *ly = &E[q];
            float *v = j->vbuf[q] + ((size_t)act_slot(j, blk) * d + k) * act_size(ly, 1);
            memcpy(v, cur, act_size(ly, 1) * sizeof(float));
            act_backward(ly, j->acts_e[q + 1] + act_slot(j, blk) * act_size(ly, 1), v);
            float *gin = q > 0 ? (cur == buf ? buf + big : buf) : j->u0 + ((size_t)act_slot(j, blk) * d + k) * nx;
            conv_backward(ly, NULL, v, gin, NULL, NULL, NULL, NULL);
            cur = gin;
        }
        sum_squares(cur, NULL, nx / NL, valid_lanes(j->batch, blk), pen);
    }
}

static void contractive_backward_block(const Job *j, int blk, float *gacc, float *buf) {
    const Layer *E = j->enc;
    const int n = j->n_enc, d = E[n - 1].cout;
    const size_t big = largest_block(E, n), nx = act_size(&E[0], 0);
    const vf scale = (vf){0} + j->cscale;
    for (int k = 0; k < d; k++) {
        const float *u = j->u0 + ((size_t)act_slot(j, blk) * d + k) * nx;
        float *h = buf;
        for (size_t p = 0; p < nx / NL; p++) V(h + p * NL) = scale * V(u + p * NL);
        size_t offset = 0;
        for (int q = 0; q < n; q++) {
            const Layer *ly = &E[q];
            const float *v = j->vbuf[q] + ((size_t)act_slot(j, blk) * d + k) * act_size(ly, 1);
            conv_backward(ly, h, v, NULL, gacc + offset * NL, NULL, NULL, NULL);
            offset += coef_count(ly);
            if (q < n - 1) {
                float *next = h == buf ? buf + big : buf;
                conv_forward(ly, h, next, NULL, 0);
                act_backward(ly, j->acts_e[q + 1] + act_slot(j, blk) * act_size(ly, 1), next);
                h = next;
            }
        }
    }
}

/* The forward pass of one block: its images into block layout, the code (to j->y), the reconstruction, its
 * per-image squared error and, where asked, the contractive penalty. */
static void forward_block(const Job *j, int blk, int loss_later) {
    const Layer *first = &j->enc[0], *last = &j->enc[j->n_enc - 1];
    to_block(j->x, j->index, j->batch, blk, first->cin, first->hin, first->win,
             j->acts_e[0] + act_slot(j, blk) * act_size(first, 0));
    stack_forward_block(j->enc, j->n_enc, j->acts_e, act_slot(j, blk));
    from_block(j->acts_e[j->n_enc] + act_slot(j, blk) * act_size(last, 1), j->batch, blk, last->cout, last->hout, last->wout,
               j->y);
    stack_forward_block(j->dec, j->n_dec, j->acts_d, act_slot(j, blk));
    const Layer *out = &j->dec[j->n_dec - 1];
    const float *xh = j->acts_d[j->n_dec] + act_slot(j, blk) * act_size(out, 1), *x = j->acts_e[0] + act_slot(j, blk) * act_size(first, 0);
    double *sse = j->sse + (size_t)blk * NL;
    for (int l = 0; l < NL; l++) sse[l] = 0.0;
    if (!loss_later) sum_squares(xh, x, (size_t)IN_SIZE(first), valid_lanes(j->batch, blk), sse);
    if (j->vbuf) contractive_forward_block(j, blk, j->scratch);
}

static void *forward_job(void *arg) {
    const Job *j = arg;
    for (int blk = j->b0; blk < j->b1; blk++) forward_block(j, blk, 0);
    return NULL;
}

/* The backward pass of one block (after its forward_block): per-lane coefficient gradients into the block's
 * slice of gacc_d (and gacc_e). */
static void backward_block(const Job *j, int blk, int loss_here) {
    const size_t big = largest_of(j->enc, j->n_enc, j->dec, j->n_dec);
    float *g = j->scratch, *tmp = j->scratch + big, *gz = j->scratch + 3 * big; /* 4 x big in all */
    const Layer *first = &j->enc[0], *last = &j->enc[j->n_enc - 1], *out = &j->dec[j->n_dec - 1];
    const size_t pixels = (size_t)IN_SIZE(first);
    {
        /* decoder first: g = gscale * (x_hat - x) on real images, 0 on padding */
        const float *xh = j->acts_d[j->n_dec] + act_slot(j, blk) * act_size(out, 1);
        const float *x = j->acts_e[0] + act_slot(j, blk) * act_size(first, 0);
        vf mask;
        for (int l = 0; l < NL; l++) mask[l] = blk * NL + l < j->batch ? j->gscale : 0.0f;
        int pre = 0;
        if (loss_here) { /* the forward left the squared error to this pass: one read of x_hat and x for both */
            pre = out->act == ACT_LEAKY;
            loss_pass(xh, x, pixels, valid_lanes(j->batch, blk), (const float *)&mask, pre, out->alpha, g,
                      j->sse + (size_t)blk * NL);
        } else {
            for (size_t p = 0; p < pixels; p++) V(g + p * NL) = mask * (V(xh + p * NL) - V(x + p * NL));
        }
        stack_backward_block(j->dec, j->n_dec, j->acts_d, act_slot(j, blk), g, j->train_enc ? gz : NULL,
                             j->gacc_d + blk * total_coefs(j->dec, j->n_dec) * NL, tmp, pre);
        if (!j->train_enc) return;
        if (j->gy) {
            float *extra = g; /* reuse g: the decoder is done with it */
            to_block(j->gy, NULL, j->batch, blk, last->cout, last->hout, last->wout, extra);
            for (size_t q = 0; q < act_size(last, 1); q++) gz[q] += extra[q];
        }
        memcpy(g, gz, act_size(last, 1) * sizeof(float));
        float *gacc = j->gacc_e + blk * total_coefs(j->enc, j->n_enc) * NL;
        stack_backward_block(j->enc, j->n_enc, j->acts_e, act_slot(j, blk), g, NULL, gacc, tmp, 0);
        if (j->vbuf && j->cscale != 0.0f) contractive_backward_block(j, blk, gacc, j->scratch);
    }
}

static void *backward_job(void *arg) {
    const Job *j = arg;
    for (int blk = j->b0; blk < j->b1; blk++) backward_block(j, blk, 0);
    return NULL;
}

/* The encoder alone, block by block: each block's images into block layout (one block of activations per
 * thread), its codes to j->y. The arithmetic of forward_block's encoder half. */
static void *encode_job(void *arg) {
    const Job *j = arg;
    const Layer *first = &j->enc[0], *last = &j->enc[j->n_enc - 1];
    for (int blk = j->b0; blk < j->b1; blk++) {
        to_block(j->x, j->index, j->batch, blk, first->cin, first->hin, first->win,
                 j->acts_e[0] + act_slot(j, blk) * act_size(first, 0));
        stack_forward_block(j->enc, j->n_enc, j->acts_e, act_slot(j, blk));
        from_block(j->acts_e[j->n_enc] + act_slot(j, blk) * act_size(last, 1), j->batch, blk, last->cout, last->hout,
                   last->wout, j->y);
    }
    return NULL;
}

/* A whole training step, block by block: each block's backward follows its forward at once, while the block's
 * activations are still in cache. The arithmetic is that of forward_job then backward_job. */
static void *step_job(void *arg) {
    const Job *j = arg;
    for (int blk = j->b0; blk < j->b1; blk++) {
        forward_block(j, blk, 1);
        backward_block(j, blk, 1);
    }
    return NULL;
}

/* Subnormal floats are flushed to zero (and read as zero) while the kernels run. A network whose weights a
 * penalty drives towards 0 (weight decay at large λ: the network collapses to a constant image) fills its
 * activations and gradients with subnormals, on which x86 arithmetic is ~100 times slower: such runs trained
 * 3.5 times slower than others (measured). Flushing changes numbers below 1.2e-38 only, the same in every
 * thread and configuration; the caller's mode is restored on return. */
typedef unsigned int FpMode;

static FpMode fp_flush_begin(void) {
#if defined(__SSE__) || defined(__x86_64__)
    const FpMode old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
    return old;
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr | (1ul << 24))); /* FZ */
    return (FpMode)fpcr;
#else
    return 0;
#endif
}

static void fp_flush_end(FpMode old) {
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(old);
#elif defined(__aarch64__)
    const unsigned long fpcr = old;
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr));
#else
    (void)old;
#endif
}

#define MAX_THREADS 64

/* A persistent pool of helper threads: job t of a call runs on helper t (t >= 1), job 0 on the caller.
 * Waking a sleeping thread costs ~100 us on a virtual machine, so a helper spins for up to SPIN_HELPER_NS
 * after its job (the next call of a training step comes sooner) and the caller spins while the helpers
 * finish, before both fall back to condition variables. Calls are serialised by pool_lock; a forked child
 * starts with no helpers (pthread_atfork). Single-threaded calls never touch the pool. */
#define SPIN_HELPER_NS 1000000L
#define SPIN_CALLER_NS 20000000L
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER, pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER, pool_done = PTHREAD_COND_INITIALIZER;
static int pool_helpers = 0, pool_pending = 0, pool_jobs = 0, pool_atfork = 0;
static long pool_generation = 0, pool_start[MAX_THREADS];
static void *(*pool_fn)(void *);
static Job *pool_list;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ volatile("" ::: "memory");
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Spin until *value != unwanted or the time is up; returns the last value read. */
static long spin_while(const long *value, long unwanted, long ns) {
    const long end = now_ns() + ns;
    long v;
    for (int k = 1; (v = __atomic_load_n(value, __ATOMIC_ACQUIRE)) == unwanted; k++) {
        cpu_relax();
        if (k % 256 == 0 && now_ns() > end) break;
    }
    return v;
}

static void pool_child(void) {
    pthread_mutex_init(&pool_lock, NULL);
    pthread_mutex_init(&pool_mu, NULL);
    pthread_cond_init(&pool_work, NULL);
    pthread_cond_init(&pool_done, NULL);
    pool_helpers = pool_pending = pool_jobs = 0;
    pool_generation = 0;
}

static void *pool_worker(void *arg) {
    const int id = (int)(size_t)arg;
    fp_flush_begin(); /* a helper only ever runs the kernels */
    pthread_mutex_lock(&pool_mu);
    long seen = pool_start[id];
    pthread_mutex_unlock(&pool_mu);
    for (;;) {
        long g = spin_while(&pool_generation, seen, SPIN_HELPER_NS);
        if (g == seen) {
            pthread_mutex_lock(&pool_mu);
            while (pool_generation == seen) pthread_cond_wait(&pool_work, &pool_mu);
            g = pool_generation;
            pthread_mutex_unlock(&pool_mu);
        }
        seen = g;
        if (id < pool_jobs) pool_fn(&pool_list[id]);
        if (__atomic_sub_fetch(&pool_pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&pool_mu);
            pthread_cond_signal(&pool_done);
            pthread_mutex_unlock(&pool_mu);
        }
    }
    return NULL;
}

static void run_jobs(void *(*fn)(void *), Job *jobs, int n_blocks, int threads) {
    for (int t = 0; t < threads; t++) {
        jobs[t].b0 = (int)((long)n_blocks * t / threads);
        jobs[t].b1 = (int)((long)n_blocks * (t + 1) / threads);
    }
    if (threads == 1) {
        fn(&jobs[0]);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    pthread_mutex_lock(&pool_mu);
    if (!pool_atfork) pool_atfork = pthread_atfork(NULL, NULL, pool_child) == 0;
    while (pool_helpers < threads - 1) {
        pthread_t tid;
        pool_start[pool_helpers + 1] = pool_generation;
        if (pthread_create(&tid, NULL, pool_worker, (void *)(size_t)(pool_helpers + 1)) != 0) break;
        pthread_detach(tid);
        pool_helpers++;
    }
    pool_fn = fn;
    pool_list = jobs;
    pool_jobs = pool_helpers + 1 < threads ? pool_helpers + 1 : threads;
    const int mine = pool_jobs;
    __atomic_store_n(&pool_pending, pool_helpers, __ATOMIC_RELEASE);
    __atomic_store_n(&pool_generation, pool_generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool_work);
    pthread_mutex_unlock(&pool_mu);
    fn(&jobs[0]);
    for (int t = mine; t < threads; t++) fn(&jobs[t]); /* jobs no helper could take */
    int left;
    const long end = now_ns() + SPIN_CALLER_NS;
    for (int k = 1; (left = __atomic_load_n(&pool_pending, __ATOMIC_ACQUIRE)) > 0; k++) {
        cpu_relax();
        if (k % 256 == 0 && now_ns() > end) break;
    }
    if (left > 0) {
        pthread_mutex_lock(&pool_mu);
        while (__atomic_load_n(&pool_pending, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&pool_done, &pool_mu);
        pthread_mutex_unlock(&pool_mu);
    }
    pthread_mutex_unlock(&pool_lock);
}

static int clamp_threads(int threads, int n_blocks) {
    if (threads > n_blocks) threads = n_blocks;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

/* ------------------------------------------------------------------------------ checks and sizes */

/* The taps of every output position (and, inverted, of every input position) fit in a Taps list. */
static int check_table(const int *table, int n_out, int n_in, int k, const int *inv, int m) {
    if (k < 1 || k > MAX_TAPS || m < 1 || (long)k * m > MAX_TAPS) return GEOAE_ETAPS;
    for (int i = 0; i < n_out * k; i++)
        if (table[i] < -1 || table[i] >= n_in) return GEOAE_ESHAPE;
    for (int i = 0; i < n_in * k * m; i++)
        if (inv[i] < -1 || inv[i] >= n_out) return GEOAE_ESHAPE;
    return GEOAE_OK;
}

static int check_stack(const Layer *layers, int n) {
    if (!layers || n < 1) return GEOAE_EARGS;
    for (int k = 0; k < n; k++) {
        const Layer *ly = &layers[k];
        if (ly->hin < 1 || ly->win < 1 || ly->cin < 1 || ly->hout < 1 || ly->wout < 1 || ly->cout < 1 || !ly->w ||
            !ly->rows || !ly->cols || !ly->irows || !ly->icols || ly->act < ACT_LEAKY || ly->act > ACT_SIGMOID)
            return GEOAE_EARGS;
        int err = check_table(ly->rows, ly->hout, ly->hin, ly->kh, ly->irows, ly->mr);
        if (!err) err = check_table(ly->cols, ly->wout, ly->win, ly->kw, ly->icols, ly->mc);
        if (err) return err;
        if (k > 0 && (ly->cin != ly[-1].cout || ly->hin != ly[-1].hout || ly->win != ly[-1].wout))
            return GEOAE_ESHAPE;
    }
    return GEOAE_OK;
}

static int check_ae(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, int threads) {
    if (batch < 1 || threads < 1) return GEOAE_EARGS;
    int err = check_stack(enc, n_enc);
    if (!err) err = check_stack(dec, n_dec);
    if (err) return err;
    const Layer *z = &enc[n_enc - 1], *out = &dec[n_dec - 1];
    if (z->hout != 1 || z->wout != 1 || dec[0].cin != z->cout || dec[0].hin != 1 || dec[0].win != 1 ||
        out->cout != enc[0].cin || out->hout != enc[0].hin || out->wout != enc[0].win)
        return GEOAE_ESHAPE;
    return GEOAE_OK;
}

long geoae_scratch_floats(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int threads) {
    return (long)clamp_threads(threads, MAX_THREADS) * 4 * (long)largest_of(enc, n_enc, dec, n_dec);
}

long geoae_activation_floats(const Layer *ly, int output, int batch) {
    return (long)((batch + NL - 1) / NL) * (long)act_size(ly, output);
}

long geoae_image_slots(int batch) { return (long)((batch + NL - 1) / NL) * NL; }

long geoae_coef_floats(const Layer *layers, int n, int batch) {
    return (long)((batch + NL - 1) / NL) * (long)total_coefs(layers, n) * NL;
}

/* ------------------------------------------------------------------------------------ entry points */

/* A copy of the caller's n layers whose wf and wi point to the weights w repacked in the orders the loops read
 * (Layer): the weights a multiply-add needs are then at constant offsets of one pointer, where the convolution
 * order (cout, cin, kh, kw) took one index register per output channel and pushed the loops' pointers onto the
 * stack. The same values: no number changes. One allocation (free it), or NULL. */
static Layer *repacked(const Layer *layers, int n) {
    size_t floats = 0;
    for (int k = 0; k < n; k++) floats += 2 * (size_t)layers[k].cout * layers[k].cin * layers[k].kh * layers[k].kw;
    Layer *out = malloc(n * sizeof(Layer) + floats * sizeof(float));
    if (!out) return NULL;
    float *mem = (float *)(out + n);
    for (int k = 0; k < n; k++) {
        const Layer *ly = &layers[k];
        const int CI = ly->cin, CO = ly->cout, T = ly->kh * ly->kw;
        float *wf = mem, *wi = mem + (size_t)CO * CI * T;
        mem = wi + (size_t)CO * CI * T;
        for (int co = 0; co < CO; co++)
            for (int ci = 0; ci < CI; ci++)
                for (int t = 0; t < T; t++) {
                    const float v = ly->w[((size_t)co * CI + ci) * T + t];
                    wf[((size_t)t * CI + ci) * CO + co] = v;
                    wi[((size_t)t * CO + co) * CI + ci] = v;
                }
        out[k] = *ly;
        out[k].wf = wf;
        out[k].wi = wi;
    }
    return out;
}

/* Whether index (NULL: none) holds batch values in [0, n_images). */
static int indices_within(const long long *index, int batch, long long n_images) {
    if (!index) return 1;
    for (int b = 0; b < batch; b++)
        if (index[b] < 0 || index[b] >= n_images) return 0;
    return 1;
}

/* Both stacks repacked (dec may be NULL); GEOAE_ENOMEM where an allocation failed (nothing to free then). */
static int repack_both(const Layer *enc, int n_enc, const Layer *dec, int n_dec, Layer **E, Layer **D) {
    *E = repacked(enc, n_enc);
    *D = dec ? repacked(dec, n_dec) : NULL;
    if (*E && (*D || !dec)) return GEOAE_OK;
    free(*E);
    free(*D);
    return GEOAE_ENOMEM;
}

/* Run fn over the batch's blocks on `threads` threads (clamped to the blocks), each job a copy of `job` with its
 * own scratch (4 x the largest block activation) and activation slot, with subnormals flushed; then, where
 * grads_d is not NULL, sum the per-block coefficient gradients in their fixed order (the encoder's too if
 * job.train_enc). */
static void run_blocks(void *(*fn)(void *), Job job, float *scratch, int threads, float *grads_e, float *grads_d) {
    const int n_blocks = (job.batch + NL - 1) / NL;
    threads = clamp_threads(threads, n_blocks);
    const size_t big = largest_of(job.enc, job.n_enc, job.dec, job.n_dec);
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        jobs[t] = job;
        jobs[t].scratch = scratch + (size_t)t * 4 * big;
        jobs[t].slot = t;
    }
    const FpMode mode = fp_flush_begin();
    run_jobs(fn, jobs, n_blocks, threads);
    if (grads_d) {
        if (job.train_enc) reduce_coefs(job.gacc_e, total_coefs(job.enc, job.n_enc), n_blocks, grads_e);
        reduce_coefs(job.gacc_d, total_coefs(job.dec, job.n_dec), n_blocks, grads_d);
    }
    fp_flush_end(mode);
}

/* The whole autoencoder and its reconstruction loss: z = E(x) (batch, d) and *total = the sum over images and
 * pixels of (D(z) - x)^2 (sse: geoae_image_slots doubles, per image). acts_e[k], acts_d[k]:
 * geoae_activation_floats of each layer's input (then of the last output); acts_d[0] must be acts_e[n_enc]
 * (the code). Unless vbuf is NULL, also the contractive penalty's sum_k ||dz_k/dx||^2 into *pen_total (pen:
 * per image, geoae_image_slots doubles), keeping vbuf and u0 for the backward. scratch: geoae_scratch_floats. */
int geoae_ae_forward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, const float *x,
                     float *z, float *const *acts_e, float *const *acts_d, double *sse, float *const *vbuf,
                     float *u0, double *pen, float *scratch, int threads, double *total, double *pen_total) {
    const int err = check_ae(enc, n_enc, dec, n_dec, batch, threads);
    if (err) return err;
    if (!x || !z || !acts_e || !acts_d || !sse || !scratch || !total || (vbuf && (!u0 || !pen || !pen_total)))
        return GEOAE_EARGS;
    Layer *E, *D;
    if (repack_both(enc, n_enc, dec, n_dec, &E, &D)) return GEOAE_ENOMEM;
    const Job job = {.enc = E, .dec = D, .n_enc = n_enc, .n_dec = n_dec, .batch = batch, .x = x, .y = z,
                     .acts_e = acts_e, .acts_d = acts_d, .sse = sse, .vbuf = vbuf, .u0 = u0, .pen = pen};
    run_blocks(forward_job, job, scratch, threads, NULL, NULL);
    free(E);
    free(D);
    *total = sum_images(sse, batch);
    if (vbuf) *pen_total = sum_images(pen, batch);
    return GEOAE_OK;
}

/* Gradients of  gscale / 2 * SSE + <gz, z> + cscale / 2 * sum_k ||dz_k/dx||^2  (gz (batch, d) or NULL; the
 * last term only if vbuf is not NULL: vbuf and u0 from geoae_ae_forward) w.r.t. the decoder's coefficients,
 * into grads_d, and, if train_encoder, the encoder's, into grads_e (else grads_e is not written). The
 * coefficients of a layer are w, b, bm in this order (where present). scratch: geoae_scratch_floats;
 * gacc_e, gacc_d: geoae_coef_floats of each stack. */
int geoae_ae_backward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, float *const *acts_e,
                      float *const *acts_d, const float *gz, float gscale, float *const *vbuf, float *u0,
                      float cscale, int train_encoder, float *grads_e, float *grads_d, float *scratch,
                      float *gacc_e, float *gacc_d, int threads) {
    const int err = check_ae(enc, n_enc, dec, n_dec, batch, threads);
    if (err) return err;
    if (!acts_e || !acts_d || !grads_d || !scratch || !gacc_d || (train_encoder && (!grads_e || !gacc_e)) ||
        (vbuf && !u0))
        return GEOAE_EARGS;
    Layer *E, *D;
    if (repack_both(enc, n_enc, dec, n_dec, &E, &D)) return GEOAE_ENOMEM;
    const Job job = {.enc = E, .dec = D, .n_enc = n_enc, .n_dec = n_dec, .batch = batch, .acts_e = acts_e,
                     .acts_d = acts_d, .gy = gz, .gscale = gscale, .gacc_e = gacc_e, .gacc_d = gacc_d, .vbuf = vbuf,
                     .u0 = u0, .cscale = cscale, .train_enc = train_encoder};
    run_blocks(backward_job, job, scratch, threads, grads_e, grads_d);
    free(E);
    free(D);
    return GEOAE_OK;
}

/* The codes z = E(x) (batch, d) of the batch images[index[b]] (index NULL: images is the batch), block by block;
 * acts_e holds one block per thread (sizes for threads * lanes images), scratch: geoae_scratch_floats. The same
 * arithmetic as geoae_ae_forward's and geoae_ae_step's encoder: the same codes, bit for bit. */
int geoae_ae_encode(const Layer *enc, int n_enc, int batch, const float *images, long long n_images,
                    const long long *index, float *z, float *const *acts_e, float *scratch, int threads) {
    if (batch < 1 || threads < 1) return GEOAE_EARGS;
    const int err = check_stack(enc, n_enc);
    if (err) return err;
    if (enc[n_enc - 1].hout != 1 || enc[n_enc - 1].wout != 1) return GEOAE_ESHAPE;
    if (!images || !z || !acts_e || !scratch) return GEOAE_EARGS;
    if (!indices_within(index, batch, n_images)) return GEOAE_EINDEX;
    Layer *E, *D;
    if (repack_both(enc, n_enc, NULL, 0, &E, &D)) return GEOAE_ENOMEM;
    const Job job = {.enc = E, .n_enc = n_enc, .batch = batch, .x = images, .index = index, .y = z,
                     .acts_e = acts_e, .local = 1};
    run_blocks(encode_job, job, scratch, threads, NULL, NULL);
    free(E);
    return GEOAE_OK;
}

/* One training step in one call: geoae_ae_forward and then geoae_ae_backward with gz (the gradient of a loss
 * term that reads the code, from the codes of geoae_ae_encode; NULL: none), computed block by block. The batch is images[index[b]] for b < batch (index NULL: images is
 * the batch). Same arguments, results and arithmetic as those two calls, but for acts_e, acts_d, vbuf and u0,
 * which hold one block per thread (sizes for threads * lanes images), reused block after block: a block's
 * activations stay in the core's cache from its forward to its backward. */
int geoae_ae_step(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, const float *images,
                  long long n_images, const long long *index, float *z, const float *gz, float *const *acts_e, float *const *acts_d,
                  double *sse, float *const *vbuf, float *u0, double *pen, float gscale, float cscale,
                  int train_encoder, float *grads_e, float *grads_d, float *scratch, float *gacc_e, float *gacc_d,
                  int threads, double *total, double *pen_total) {
    const int err = check_ae(enc, n_enc, dec, n_dec, batch, threads);
    if (err) return err;
    if (!images || !z || !acts_e || !acts_d || !sse || !scratch || !total || !grads_d || !gacc_d ||
        (train_encoder && (!grads_e || !gacc_e)) || (vbuf && (!u0 || !pen || !pen_total)))
        return GEOAE_EARGS;
    if (!indices_within(index, batch, n_images)) return GEOAE_EINDEX;
    Layer *E, *D;
    if (repack_both(enc, n_enc, dec, n_dec, &E, &D)) return GEOAE_ENOMEM;
    const Job job = {.enc = E, .dec = D, .n_enc = n_enc, .n_dec = n_dec, .batch = batch, .x = images,
                     .index = index, .y = z, .gy = gz, .acts_e = acts_e, .acts_d = acts_d, .sse = sse, .vbuf = vbuf,
                     .u0 = u0, .pen = pen, .gscale = gscale, .cscale = cscale, .train_enc = train_encoder,
                     .gacc_e = gacc_e, .gacc_d = gacc_d, .local = 1};
    run_blocks(step_job, job, scratch, threads, grads_e, grads_d);
    free(E);
    free(D);
    *total = sum_images(sse, batch);
    if (vbuf) *pen_total = sum_images(pen, batch);
    return GEOAE_OK;
}

/* ------------------------------------------------------------------------------------------------- Adam */

/* Adam's update of n float32 tensors p (gradients g, state m and v, numel[t] entries each) at step `step`, with
 * amsgrad, maximize and weight decay off and 1 - beta1 < 0.5: the arithmetic of torch's fused CPU Adam
 * (_fused_adam_) as measured on torch 2.13, float32 operations with the constants rounded from double:
 *   m <- fma(1 - beta1, g - m, m)                      (torch's lerp of m towards g)
 *   v <- fma(g, g * (1 - beta2), v * beta2)            (the first numel - numel % width entries: its vector body)
 *   v <- fma(v, beta2, g * (g * (1 - beta2)))          (the others: its scalar tail)
 *   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * width: the vector width of torch's build. Python checks at first use that this equals torch's update bit for bit
 * (training.optim), and uses torch's otherwise. */
int geoae_adam(int n, float *const *p, const float *const *g, float *const *m, float *const *v,
               const long long *numel, double lr, double beta1, double beta2, double eps, double step, int width) {
    if (n < 0 || width < 1 || !(1.0 - beta1 < 0.5) || (n > 0 && (!p || !g || !m || !v || !numel))) return GEOAE_EARGS;
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    const float ss = (float)(lr / bc1), root = (float)sqrt(bc2), w = (float)(1.0 - beta1), b2 = (float)beta2,
                c2 = (float)(1.0 - beta2), e = (float)eps;
    for (int t = 0; t < n; t++) {
        const long long body = numel[t] - numel[t] % width;
        float *restrict pt = p[t], *restrict mt = m[t], *restrict vt = v[t];
        const float *restrict gt = g[t];
        for (long long i = 0; i < numel[t]; i++) {
            const float gi = gt[i], mi = fmaf(w, gi - mt[i], mt[i]);
            const float vi = i < body ? fmaf(gi, gi * c2, vt[i] * b2) : fmaf(vt[i], b2, gi * (gi * c2));
            mt[i] = mi;
            vt[i] = vi;
            pt[i] = pt[i] - (ss * mi) / (sqrtf(vi) / root + e);
        }
    }
    return GEOAE_OK;
}
