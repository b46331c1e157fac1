/* geoae fused kernels: the paper64 / paper1d autoencoder's convolution stacks, forward and backward.
 *
 * Compiled on first use by geoae/fused.py (any C99 compiler; no Python or torch headers) and called
 * through ctypes. See fused.py for what this computes and why it is fast.
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
#include <string.h>

#ifndef GEOAE_LANES
#define GEOAE_LANES 16
#endif
#define NL GEOAE_LANES

enum { ACT_LEAKY = 0, ACT_IDENTITY = 1, ACT_SIGMOID = 2 };

typedef struct {
    int hin, win, cin, hout, wout, cout, kh, kw;
    int act;
    float alpha;
    const int *rows; /* hout * kh */
    const int *cols; /* wout * kw */
    const float *w;  /* (cout, cin, kh, kw) */
    const float *b;  /* (cout) or NULL */
} Layer;

int geoae_lanes(void) { return NL; }

static size_t act_size(const Layer *ly, int output) {
    return output ? (size_t)ly->hout * ly->wout * ly->cout * NL : (size_t)ly->hin * ly->win * ly->cin * NL;
}

/* NL floats as one vector value (GCC / Clang vector extension); no alignment is assumed. */
typedef float vf __attribute__((vector_size(NL * sizeof(float)), aligned(sizeof(float)), may_alias));
typedef double vd __attribute__((vector_size(NL * sizeof(double))));
#define V(p) (*(vf *)(p))
#define CHUNK 8 /* output channels kept in registers at once */
#define INLINE static inline __attribute__((always_inline))

/* One output pixel, output channels [co0, co0 + NC): o = b + sum over taps and input channels of w * in.
 * With few channels, two sets of accumulators (even / odd input channels) hide the multiply-add latency. */
INLINE void forward_pixel(const Layer *ly, const float *restrict in, float *restrict o, int i, int j, int co0,
                          const int NC, const float *restrict bias) {
    const int CI = ly->cin, KH = ly->kh, KW = ly->kw, T = KH * KW;
    const int SETS = NC <= 4 ? 2 : 1;
    vf acc[2][CHUNK];
    memset(acc, 0, sizeof acc);
    for (int a = 0; a < KH; a++) {
        const int r = ly->rows[i * KH + a];
        if (r < 0) continue;
        for (int c = 0; c < KW; c++) {
            const int s = ly->cols[j * KW + c];
            if (s < 0) continue;
            const float *restrict src = in + ((size_t)r * ly->win + s) * CI * NL;
            const float *restrict w = ly->w + (size_t)co0 * CI * T + a * KW + c;
            vf *restrict A = acc[0], *restrict B = acc[SETS - 1];
            int ci = 0;
            for (; ci + 1 < CI; ci += 2) { /* two input channels: independent chains when NC is small */
                const vf x0 = V(src + ci * NL), x1 = V(src + (ci + 1) * NL);
                for (int k = 0; k < NC; k++) {
                    A[k] += w[(k * CI + ci) * T] * x0;
                    B[k] += w[(k * CI + ci + 1) * T] * x1;
                }
            }
            if (ci < CI) {
                const vf x = V(src + ci * NL);
                for (int k = 0; k < NC; k++) A[k] += w[(k * CI + ci) * T] * x;
            }
        }
    }
    for (int k = 0; k < NC; k++) {
        const float b = bias ? bias[co0 + k] : 0.0f;
        vf t = acc[0][k];
        if (SETS == 2) t += acc[1][k];
        V(o + (co0 + k) * NL) = t + b;
    }
}

/* Backward of one output pixel for channels [co0, co0 + NC): go holds the pre-activation gradient. */
INLINE void backward_pixel(const Layer *ly, const float *restrict in, const float *restrict go,
                           float *restrict gin, float *restrict gw, int i, int j, int co0, const int NC) {
    const int CI = ly->cin, KH = ly->kh, KW = ly->kw, T = KH * KW;
    vf g[CHUNK];
    for (int k = 0; k < NC; k++) g[k] = V(go + (co0 + k) * NL);
    for (int a = 0; a < KH; a++) {
        const int r = ly->rows[i * KH + a];
        if (r < 0) continue;
        for (int c = 0; c < KW; c++) {
            const int s = ly->cols[j * KW + c];
            if (s < 0) continue;
            const size_t base = ((size_t)r * ly->win + s) * CI * NL;
            const float *restrict w = ly->w + (size_t)co0 * CI * T + a * KW + c;
            float *restrict acc = gw ? gw + ((size_t)co0 * CI * T + a * KW + c) * NL : NULL;
            for (int ci = 0; ci < CI; ci++) {
                if (acc) {
                    const vf x = V(in + base + ci * NL);
                    for (int k = 0; k < NC; k++) V(acc + (size_t)(k * CI + ci) * T * NL) += g[k] * x;
                }
                if (gin) {
                    vf t = V(gin + base + ci * NL);
                    for (int k = 0; k < NC; k++) t += w[(k * CI + ci) * T] * g[k];
                    V(gin + base + ci * NL) = t;
                }
            }
        }
    }
}

#define DISPATCH(call)                                                                                    \
    for (int co0 = 0; co0 < ly->cout; co0 += CHUNK) {                                                     \
        switch (ly->cout - co0 < CHUNK ? ly->cout - co0 : CHUNK) {                                        \
        case 1: call(1); break;                                                                           \
        case 2: call(2); break;                                                                           \
        case 3: call(3); break;                                                                           \
        case 4: call(4); break;                                                                           \
        case 5: call(5); break;                                                                           \
        case 6: call(6); break;                                                                           \
        case 7: call(7); break;                                                                           \
        default: call(8); break;                                                                          \
        }                                                                                                 \
    }

/* out = conv(in, w) (+ b if bias): no activation. */
static void conv_forward(const Layer *ly, const float *restrict in, float *restrict out, const float *restrict bias) {
    const int CO = ly->cout;
    for (int i = 0; i < ly->hout; i++) {
        for (int j = 0; j < ly->wout; j++) {
            float *restrict o = out + ((size_t)i * ly->wout + j) * CO * NL;
#define FWD(n) forward_pixel(ly, in, o, i, j, co0, n, bias)
            DISPATCH(FWD)
#undef FWD
        }
    }
}

static void layer_forward(const Layer *ly, const float *restrict in, float *restrict out) {
    conv_forward(ly, in, out, ly->b);
    const size_t n = act_size(ly, 1);
    if (ly->act == ACT_LEAKY) {
        const float alpha = ly->alpha;
        for (size_t k = 0; k < n; k++) out[k] = out[k] > 0.0f ? out[k] : alpha * out[k];
    } else if (ly->act == ACT_SIGMOID) {
        for (size_t k = 0; k < n; k++) out[k] = 1.0f / (1.0f + expf(-out[k]));
    }
}

/* g *= act'(pre-activation), from the layer's output `out` (leaky: out > 0 iff pre-activation > 0). */
static void act_backward(const Layer *ly, const float *restrict out, float *restrict g) {
    const size_t n = act_size(ly, 1);
    if (ly->act == ACT_LEAKY) {
        const float alpha = ly->alpha;
        for (size_t k = 0; k < n; k++) g[k] *= out[k] > 0.0f ? 1.0f : alpha;
    } else if (ly->act == ACT_SIGMOID) {
        for (size_t k = 0; k < n; k++) g[k] *= out[k] * (1.0f - out[k]);
    }
}

/* Adjoint of conv_forward for the pre-activation gradient g: gin (zeroed here) = conv^T(g) unless NULL;
 * gw, gb (unless NULL) accumulate per-lane weight and bias gradients: gw[(co, ci, a, c)][lane], gb[co][lane]. */
static void conv_backward(const Layer *ly, const float *restrict in, const float *restrict g, float *restrict gin,
                          float *restrict gw, float *restrict gb) {
    const int CO = ly->cout;
    if (gin) memset(gin, 0, act_size(ly, 0) * sizeof(float));
    if (gb) {
        for (size_t p = 0; p < (size_t)ly->hout * ly->wout; p++)
            for (int k = 0; k < CO * NL; k++) gb[k] += g[p * CO * NL + k];
    }
    for (int i = 0; i < ly->hout; i++) {
        for (int j = 0; j < ly->wout; j++) {
            const float *restrict go = g + ((size_t)i * ly->wout + j) * CO * NL;
#define BWD(n) backward_pixel(ly, in, go, gin, gw, i, j, co0, n)
            DISPATCH(BWD)
#undef BWD
        }
    }
}

/* g: on entry the gradient w.r.t. the layer's output, turned in place into the gradient w.r.t. the
 * pre-activation; then conv_backward. */
static void layer_backward(const Layer *ly, const float *restrict in, const float *restrict out,
                           float *restrict g, float *restrict gin, float *restrict gw, float *restrict gb) {
    act_backward(ly, out, g);
    conv_backward(ly, in, g, gin, gw, gb);
}

/* ------------------------------------------------------------------------------------- stacks */

static size_t coef_count(const Layer *ly) {
    return (size_t)ly->cout * ly->cin * ly->kh * ly->kw + (ly->b ? (size_t)ly->cout : 0);
}

static size_t largest_block(const Layer *layers, int n) {
    size_t biggest = act_size(&layers[n - 1], 1);
    for (int k = 0; k < n; k++)
        if (act_size(&layers[k], 0) > biggest) biggest = act_size(&layers[k], 0);
    return biggest;
}

/* (B, C, H, W) images [blk * NL, blk * NL + NL) <-> one block [H][W][C][lane] (missing images: 0 in the
 * block, not written back). Tiles of TILE columns x NL lanes keep both sides of the transpose in L1. */
#define TILE 16

static void to_block(const float *restrict src, int batch, int blk, int C, int H, int W, float *restrict dst) {
    const size_t n = (size_t)C * H * W;
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++)
            for (int w0 = 0; w0 < W; w0 += TILE) {
                const int w1 = w0 + TILE < W ? w0 + TILE : W;
                for (int l = 0; l < NL; l++) {
                    const int b = blk * NL + l;
                    const float *restrict s = src + (size_t)b * n + ((size_t)c * H + h) * W;
                    float *restrict d = dst + ((size_t)h * W * C + c) * NL + l;
                    if (b < batch)
                        for (int w = w0; w < w1; w++) d[(size_t)w * C * NL] = s[w];
                    else
                        for (int w = w0; w < w1; w++) d[(size_t)w * C * NL] = 0.0f;
                }
            }
}

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

/* One block through a stack: acts[k] + blk * size(k) is activation k of the block (acts[0] must hold it). */
static void stack_forward_block(const Layer *layers, int n, float *const *acts, int blk) {
    for (int k = 0; k < n; k++) {
        const Layer *ly = &layers[k];
        layer_forward(ly, acts[k] + blk * act_size(ly, 0), acts[k + 1] + blk * act_size(ly, 1));
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
static void stack_backward_block(const Layer *layers, int n, float *const *acts, int blk, float *g, float *gin,
                                 float *gacc, float *tmp) {
    const size_t biggest = largest_block(layers, n);
    float *cur = g, *bufs[2] = {tmp, tmp + biggest};
    memset(gacc, 0, total_coefs(layers, n) * NL * sizeof(float));
    size_t offset = total_coefs(layers, n);
    for (int k = n - 1; k >= 0; k--) {
        const Layer *ly = &layers[k];
        float *next = k > 0 ? bufs[k % 2] : gin;
        offset -= coef_count(ly);
        float *gw = gacc + offset * NL;
        const size_t nw = (size_t)ly->cout * ly->cin * ly->kh * ly->kw;
        layer_backward(ly, acts[k] + blk * act_size(ly, 0), acts[k + 1] + blk * act_size(ly, 1), cur, next, gw,
                       ly->b ? gw + nw * NL : NULL);
        cur = next;
    }
}

/* grads[q] = sum over blocks, then lanes, of gacc[blk][q][lane], in double: a fixed order. */
static void reduce_coefs(const float *gacc, size_t total, int n_blocks, float *grads) {
    for (size_t q = 0; q < total; q++) {
        double s = 0.0;
        for (int blk = 0; blk < n_blocks; blk++)
            for (int l = 0; l < NL; l++) s += gacc[((size_t)blk * total + q) * NL + l];
        grads[q] = (float)s;
    }
}

typedef struct {
    const Layer *enc, *dec; /* one stack: enc only; the autoencoder: both (dec reads enc's last activation) */
    int n_enc, n_dec, batch, b0, b1;
    const float *x;         /* input (B, C, H, W) */
    float *y;               /* stack: output (B, C', H', W'); autoencoder: the code z (B, d) */
    float *const *acts_e, *const *acts_d;
    const float *gy;        /* backward: gradient of y (stack) or of z (autoencoder; may be NULL) */
    float *gx;              /* backward, stack only: gradient of x or NULL */
    float gscale;           /* backward, autoencoder: d loss / d x_hat = gscale * (x_hat - x) */
    double *sse;            /* forward, autoencoder: per block sum of squared errors */
    float *scratch;         /* this thread's 4 x largest block activation */
    float *gacc_e, *gacc_d; /* backward: per block, per lane coefficient gradients */
    /* the contractive penalty (autoencoder only; vbuf NULL: not computed) */
    float *const *vbuf;     /* vbuf[l]: per block and code dimension k, the pre-activation gradient of
                               z_k at encoder layer l (n_blocks * d * size of layer l's output) */
    float *u0;              /* per block and k: dz_k/dx in block layout (n_blocks * d * size of x) */
    double *pen;            /* forward: per block sum over images, pixels and k of (dz_k/dx)^2 */
    float cscale;           /* backward: d loss / d (dz_k/dx) = cscale * dz_k/dx */
} Job;

#define IN_SIZE(ly) ((ly)->cin * (ly)->hin * (ly)->win)

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
    double pen = 0.0;
    for (int k = 0; k < d; k++) {
        float *cur = buf;
        memset(cur, 0, act_size(&E[n - 1], 1) * sizeof(float));
        for (int l = 0; l < NL && blk * NL + l < j->batch; l++) cur[k * NL + l] = 1.0f; /* z is 1 x 1 x d */
        for (int q = n - 1; q >= 0; q--) {
            const Layer *ly = &E[q];
            float *v = j->vbuf[q] + ((size_t)blk * d + k) * act_size(ly, 1);
            memcpy(v, cur, act_size(ly, 1) * sizeof(float));
            act_backward(ly, j->acts_e[q + 1] + blk * act_size(ly, 1), v);
            float *gin = q > 0 ? (cur == buf ? buf + big : buf) : j->u0 + ((size_t)blk * d + k) * nx;
            conv_backward(ly, NULL, v, gin, NULL, NULL);
            cur = gin;
        }
        vd s0 = {0}, s1 = {0};
        size_t p = 0;
        for (; p + 1 < nx / NL; p += 2) {
            const vd e0 = __builtin_convertvector(V(cur + p * NL), vd), e1 = __builtin_convertvector(V(cur + (p + 1) * NL), vd);
            s0 += e0 * e0;
            s1 += e1 * e1;
        }
        for (; p < nx / NL; p++) {
            const vd e0 = __builtin_convertvector(V(cur + p * NL), vd);
            s0 += e0 * e0;
        }
        for (int l = 0; l < NL; l++) pen += s0[l] + s1[l];
    }
    j->pen[blk] = pen;
}

static void contractive_backward_block(const Job *j, int blk, float *gacc, float *buf) {
    const Layer *E = j->enc;
    const int n = j->n_enc, d = E[n - 1].cout;
    const size_t big = largest_block(E, n), nx = act_size(&E[0], 0);
    const vf scale = (vf){0} + j->cscale;
    for (int k = 0; k < d; k++) {
        const float *u = j->u0 + ((size_t)blk * d + k) * nx;
        float *h = buf;
        for (size_t p = 0; p < nx / NL; p++) V(h + p * NL) = scale * V(u + p * NL);
        size_t offset = 0;
        for (int q = 0; q < n; q++) {
            const Layer *ly = &E[q];
            const float *v = j->vbuf[q] + ((size_t)blk * d + k) * act_size(ly, 1);
            conv_backward(ly, h, v, NULL, gacc + offset * NL, NULL);
            offset += coef_count(ly);
            if (q < n - 1) {
                float *next = h == buf ? buf + big : buf;
                conv_forward(ly, h, next, NULL);
                act_backward(ly, j->acts_e[q + 1] + blk * act_size(ly, 1), next);
                h = next;
            }
        }
    }
}

static void *forward_job(void *arg) {
    const Job *j = arg;
    const Layer *first = &j->enc[0], *last = &j->enc[j->n_enc - 1];
    for (int blk = j->b0; blk < j->b1; blk++) {
        to_block(j->x, j->batch, blk, first->cin, first->hin, first->win, j->acts_e[0] + blk * act_size(first, 0));
        stack_forward_block(j->enc, j->n_enc, j->acts_e, blk);
        from_block(j->acts_e[j->n_enc] + blk * act_size(last, 1), j->batch, blk, last->cout, last->hout, last->wout,
                   j->y);
        if (!j->dec) continue;
        stack_forward_block(j->dec, j->n_dec, j->acts_d, blk);
        const Layer *out = &j->dec[j->n_dec - 1];
        const float *xh = j->acts_d[j->n_dec] + blk * act_size(out, 1), *x = j->acts_e[0] + blk * act_size(first, 0);
        const size_t pixels = (size_t)IN_SIZE(first);
        vd s0 = {0}, s1 = {0};
        for (size_t p = 0; p + 1 < pixels; p += 2) {
            const vd e0 = __builtin_convertvector(V(xh + p * NL) - V(x + p * NL), vd);
            const vd e1 = __builtin_convertvector(V(xh + (p + 1) * NL) - V(x + (p + 1) * NL), vd);
            s0 += e0 * e0;
            s1 += e1 * e1;
        }
        if (pixels % 2) {
            const vd e0 = __builtin_convertvector(V(xh + (pixels - 1) * NL) - V(x + (pixels - 1) * NL), vd);
            s0 += e0 * e0;
        }
        double sse = 0.0;
        for (int l = 0; l < NL && blk * NL + l < j->batch; l++) sse += s0[l] + s1[l];
        j->sse[blk] = sse;
        if (j->vbuf) contractive_forward_block(j, blk, j->scratch);
    }
    return NULL;
}

static void *backward_job(void *arg) {
    const Job *j = arg;
    const size_t big = largest_block(j->enc, j->n_enc) > (j->dec ? largest_block(j->dec, j->n_dec) : 0)
                           ? largest_block(j->enc, j->n_enc) : largest_block(j->dec, j->n_dec);
    float *g = j->scratch, *tmp = j->scratch + big, *spare = j->scratch + 3 * big; /* 4 x big in all */
    const Layer *first = &j->enc[0], *last = &j->enc[j->n_enc - 1];
    for (int blk = j->b0; blk < j->b1; blk++) {
        float *gz = NULL;
        if (j->dec) { /* decoder first: g = gscale * (x_hat - x) on real images, 0 on padding */
            const Layer *out = &j->dec[j->n_dec - 1];
            const float *xh = j->acts_d[j->n_dec] + blk * act_size(out, 1);
            const float *x = j->acts_e[0] + blk * act_size(first, 0);
            const size_t pixels = (size_t)IN_SIZE(first);
            vf mask;
            for (int l = 0; l < NL; l++) mask[l] = blk * NL + l < j->batch ? j->gscale : 0.0f;
            for (size_t p = 0; p < pixels; p++) V(g + p * NL) = mask * (V(xh + p * NL) - V(x + p * NL));
            gz = spare;
            stack_backward_block(j->dec, j->n_dec, j->acts_d, blk, g, gz,
                                 j->gacc_d + blk * total_coefs(j->dec, j->n_dec) * NL, tmp);
            if (j->gy) {
                float *extra = g; /* reuse g: the decoder is done with it */
                to_block(j->gy, j->batch, blk, last->cout, last->hout, last->wout, extra);
                for (size_t q = 0; q < act_size(last, 1); q++) gz[q] += extra[q];
            }
            memcpy(g, gz, act_size(last, 1) * sizeof(float));
        } else {
            to_block(j->gy, j->batch, blk, last->cout, last->hout, last->wout, g);
        }
        float *gin = j->gx ? spare : NULL;
        float *gacc = j->gacc_e + blk * total_coefs(j->enc, j->n_enc) * NL;
        stack_backward_block(j->enc, j->n_enc, j->acts_e, blk, g, gin, gacc, tmp);
        if (gin) from_block(gin, j->batch, blk, first->cin, first->hin, first->win, j->gx);
        if (j->vbuf && j->cscale != 0.0f) contractive_backward_block(j, blk, gacc, j->scratch);
    }
    return NULL;
}

#define MAX_THREADS 64

static void run_jobs(void *(*fn)(void *), Job *jobs, int n_blocks, int threads) {
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t].b0 = (int)((long)n_blocks * t / threads);
        jobs[t].b1 = (int)((long)n_blocks * (t + 1) / threads);
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, fn, &jobs[t]) == 0;
    fn(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(&jobs[t]); /* no thread could be started: do its share here */
    }
}

static int clamp_threads(int threads, int n_blocks) {
    if (threads > n_blocks) threads = n_blocks;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

/* A stack (the encoder or the decoder alone): y = stack(x), x (batch, C, H, W) -> y (batch, C', H', W');
 * every activation of every block is kept in acts (acts[k]: n_blocks * H_k * W_k * C_k * NL floats). */
int geoae_forward(const Layer *layers, int n, int batch, const float *x, float *y, float *const *acts, int threads) {
    const int n_blocks = (batch + NL - 1) / NL;
    threads = clamp_threads(threads, n_blocks);
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (Job){.enc = layers, .n_enc = n, .batch = batch, .x = x, .y = y, .acts_e = acts};
    run_jobs(forward_job, jobs, n_blocks, threads);
    return 0;
}

/* From geoae_forward's activations and gy = dL/dy: gx = dL/dx (unless NULL) and grads = dL/d(w_0, b_0, w_1,
 * ...) (biases where present). Per-block, per-lane partial sums are added in a fixed order (blocks, lanes,
 * in double): the result does not depend on the number of threads. scratch: threads * 4 * (largest block
 * activation) floats; gacc: n_blocks * coefs * NL floats. */
int geoae_backward(const Layer *layers, int n, int batch, float *const *acts, const float *gy, float *gx,
                   float *grads, float *scratch, float *gacc, int threads) {
    const int n_blocks = (batch + NL - 1) / NL;
    threads = clamp_threads(threads, n_blocks);
    const size_t per_thread = 4 * largest_block(layers, n);
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (Job){.enc = layers, .n_enc = n, .batch = batch, .acts_e = acts, .gy = gy, .gx = gx,
                        .scratch = scratch + (size_t)t * per_thread, .gacc_e = gacc};
    run_jobs(backward_job, jobs, n_blocks, threads);
    reduce_coefs(gacc, total_coefs(layers, n), n_blocks, grads);
    return 0;
}

/* The whole autoencoder and its reconstruction loss: z = E(x) (batch, d) and the sum over images and pixels
 * of (D(z) - x)^2, returned. acts_d[0] must be acts_e[n_enc] (the code). Unless vbuf is NULL, also the
 * contractive penalty's sum_k ||dz_k/dx||^2, into pen[n_blocks] (pen[blk]: per block), keeping vbuf and u0
 * for the backward. scratch: threads * 4 * (largest block activation of either stack) floats. */
double geoae_ae_forward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, const float *x,
                        float *z, float *const *acts_e, float *const *acts_d, double *sse, float *const *vbuf,
                        float *u0, double *pen, float *scratch, int threads) {
    const int n_blocks = (batch + NL - 1) / NL;
    threads = clamp_threads(threads, n_blocks);
    size_t big = largest_block(enc, n_enc);
    if (largest_block(dec, n_dec) > big) big = largest_block(dec, n_dec);
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (Job){.enc = enc, .dec = dec, .n_enc = n_enc, .n_dec = n_dec, .batch = batch, .x = x, .y = z,
                        .acts_e = acts_e, .acts_d = acts_d, .sse = sse, .vbuf = vbuf, .u0 = u0, .pen = pen,
                        .scratch = scratch + (size_t)t * 4 * big};
    run_jobs(forward_job, jobs, n_blocks, threads);
    double total = 0.0;
    for (int blk = 0; blk < n_blocks; blk++) total += sse[blk];
    if (vbuf) {
        pen[n_blocks] = 0.0;
        for (int blk = 0; blk < n_blocks; blk++) pen[n_blocks] += pen[blk];
    }
    return total;
}

/* Gradients of  gscale / 2 * SSE + <gz, z> + cscale / 2 * sum_k ||dz_k/dx||^2  (gz (batch, d) or NULL; the
 * last term only if vbuf is not NULL: vbuf and u0 from geoae_ae_forward) w.r.t. the encoder's and the
 * decoder's coefficients, into grads_e and grads_d. scratch: threads * 4 * (largest block activation of
 * either stack); gacc_e, gacc_d: n_blocks * coefs * NL floats. */
int geoae_ae_backward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, float *const *acts_e,
                      float *const *acts_d, const float *gz, float gscale, float *const *vbuf, float *u0,
                      float cscale, float *grads_e, float *grads_d, float *scratch, float *gacc_e, float *gacc_d,
                      int threads) {
    const int n_blocks = (batch + NL - 1) / NL;
    threads = clamp_threads(threads, n_blocks);
    size_t big = largest_block(enc, n_enc);
    if (largest_block(dec, n_dec) > big) big = largest_block(dec, n_dec);
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (Job){.enc = enc, .dec = dec, .n_enc = n_enc, .n_dec = n_dec, .batch = batch, .acts_e = acts_e,
                        .acts_d = acts_d, .gy = gz, .gscale = gscale, .scratch = scratch + (size_t)t * 4 * big,
                        .gacc_e = gacc_e, .gacc_d = gacc_d, .vbuf = vbuf, .u0 = u0, .cscale = cscale};
    run_jobs(backward_job, jobs, n_blocks, threads);
    reduce_coefs(gacc_e, total_coefs(enc, n_enc), n_blocks, grads_e);
    reduce_coefs(gacc_d, total_coefs(dec, n_dec), n_blocks, grads_d);
    return 0;
}
