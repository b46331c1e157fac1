/* geoae fused kernels: the C/Python contract (the only declarations fused.py relies on).
 *
 * fused.py mirrors `Layer` with a ctypes structure and refuses a library whose geoae_abi_version() or
 * geoae_layer_size() differs from what it expects. Every entry point checks its layers first and returns
 * one of the GEOAE_E* codes (0: success); nothing is computed when a check fails.
 */
#ifndef GEOAE_FUSED_H
#define GEOAE_FUSED_H

#ifndef GEOAE_ABI_VERSION /* overridable only to test the refusal of a mismatched library */
#define GEOAE_ABI_VERSION 5
#endif

enum {
    GEOAE_OK = 0,
    GEOAE_EARGS = 1,    /* a null pointer, a non-positive size or batch, an unknown activation */
    GEOAE_ETAPS = 2,    /* a kernel, or the taps reading one input sample, beyond GEOAE_MAX_TAPS */
    GEOAE_ESHAPE = 3,   /* consecutive layers do not fit (channels, grid), or the code is not 1 x 1 */
    GEOAE_ENOMEM = 4,   /* the library's copy of the weights could not be allocated */
    GEOAE_EINDEX = 5,   /* an index outside [0, n_images) */
};

#define GEOAE_MAX_TAPS 16

enum { ACT_LEAKY = 0, ACT_IDENTITY = 1, ACT_SIGMOID = 2 };

/* One layer: out = act(conv(in, w) + b + bm) with a kh x kw kernel in convolution layout (cout, cin, kh, kw)
 * whose tap (a, c) of output (i, j) reads input row rows[i * kh + a], column cols[j * kw + c] (-1: nothing).
 * irows / icols are the inverse tables (for each input row r and tap a, the mr output rows reading it). */
typedef struct {
    int hin, win, cin, hout, wout, cout, kh, kw;
    int act;
    float alpha;
    const int *rows;  /* hout * kh */
    const int *cols;  /* wout * kw */
    const float *w;   /* (cout, cin, kh, kw) */
    const float *b;   /* (cout) or NULL */
    const float *bm;  /* per-pixel bias map (hout, wout, cout) or NULL: the coordinate-channel term */
    int mr, mc;
    const int *irows; /* hin * kh * mr, -1 padded */
    const int *icols; /* win * kw * mc */
    /* Set by the library on its own copy of the layer (callers leave them NULL): w in the orders its loops read,
     * wf (kh * kw, cin, cout) for the forward pass and wi (kh * kw, cout, cin) for the input gradient. */
    const float *wf;
    const float *wi;
} Layer;

int geoae_abi_version(void);
int geoae_layer_size(void);
int geoae_lanes(void);
int geoae_chunk(void);
int geoae_wg_accumulators(void);

/* Workspace sizes in floats, computed here only: per thread scratch, and per-lane coefficient gradients. */
long geoae_scratch_floats(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int threads);
long geoae_activation_floats(const Layer *ly, int output, int batch);
long geoae_coef_floats(const Layer *layers, int n, int batch);
long geoae_image_slots(int batch);

int geoae_ae_forward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, const float *x,
                     float *z, float *const *acts_e, float *const *acts_d, double *sse, float *const *vbuf,
                     float *u0, double *pen, float *scratch, int threads, double *total, double *pen_total);
int geoae_ae_backward(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, float *const *acts_e,
                      float *const *acts_d, const float *gz, float gscale, float *const *vbuf, float *u0,
                      float cscale, int train_encoder, float *grads_e, float *grads_d, float *scratch,
                      float *gacc_e, float *gacc_d, int threads);
/* The codes alone, the batch gathered as in geoae_ae_step; acts_e holds one block per thread. */
int geoae_ae_encode(const Layer *enc, int n_enc, int batch, const float *images, long long n_images,
                    const long long *index, float *z, float *const *acts_e, float *scratch, int threads);
/* geoae_ae_forward, then geoae_ae_backward with gz (or NULL), in one call, the batch gathered as images[index[b]]
 * (index NULL: images is the batch; else every index[b] in [0, n_images)) straight into the kernels' layout; acts_e, acts_d, vbuf and u0 hold one block
 * per thread (sizes for threads * lanes images). */
int geoae_ae_step(const Layer *enc, int n_enc, const Layer *dec, int n_dec, int batch, const float *images,
                  long long n_images, const long long *index, float *z, const float *gz, float *const *acts_e, float *const *acts_d,
                  double *sse, float *const *vbuf, float *u0, double *pen, float gscale, float cscale,
                  int train_encoder, float *grads_e, float *grads_d, float *scratch, float *gacc_e, float *gacc_d,
                  int threads, double *total, double *pen_total);
/* Adam's update of n float32 tensors, the arithmetic of torch's fused CPU Adam (_fused.c says which). */
int geoae_adam(int n, float *const *p, const float *const *g, float *const *m, float *const *v,
               const long long *numel, double lr, double beta1, double beta2, double eps, double step, int width);
#endif
