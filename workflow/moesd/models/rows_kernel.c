/* y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N]) in fp32 for a decode step's few rows (M <= ROWS_MAX),
 * streaming each row of W once from memory: AVX2 + FMA, the rows of W split among OpenMP threads
 * (the process's runtime: torch's libgomp.so.1 when loaded after torch). Built and called by
 * moesd/models/rows_kernel.py, which checks M, K % 8 == 0, contiguity and the CPU first.
 *
 * Two loop orders, chosen by K (measured on a 2-core AVX2 EPYC, docs/benchmarks.md):
 * - K < WIDE_K: one row of W against up to 8 rows of x (x stays in L1);
 * - K >= WIDE_K: four rows of W against two rows of x at a time (fewer loads per FMA), K in
 *   blocks that keep the four rows of W and the rows of x in L1 while the pairs pass over them.
 */
#include <immintrin.h>
#include <omp.h>
#include <stddef.h>

#define ROWS_MAX 16
#define WIDE_K 1024
#define K_BLOCK 256

static inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

/* one row w of W against MM rows of x: y[m * N] for m < MM */
#define NARROW(MM)                                                                                \
    static void narrow_##MM(const float *x, const float *w, long K, float *y, long N, float b) { \
        __m256 acc[MM];                                                                           \
        for (int m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                                \
        for (long k = 0; k < K; k += 8) {                                                         \
            __m256 wv = _mm256_loadu_ps(w + k);                                                   \
            for (int m = 0; m < MM; m++)                                                          \
                acc[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k), wv, acc[m]);             \
        }                                                                                         \
        for (int m = 0; m < MM; m++) y[m * N] = hsum(acc[m]) + b;                                 \
    }
NARROW(1) NARROW(2) NARROW(3) NARROW(4) NARROW(5) NARROW(6) NARROW(7) NARROW(8)
typedef void (*narrow_fn)(const float *, const float *, long, float *, long, float);
static const narrow_fn NARROW_FNS[9] = {0, narrow_1, narrow_2, narrow_3, narrow_4, narrow_5, narrow_6, narrow_7, narrow_8};

/* four rows w of W against M rows of x, two at a time: y[m * N + 0..3]. K is taken in blocks of
 * K_BLOCK floats, so that a block of the four rows of W (4 KB) and of every row of x (up to 16 KB)
 * stay in L1 while the pairs of x pass over them; the sums are carried from block to block. */
static void wide_4(const float *x, long M, const float *w, long K, float *y, long N, const float *b) {
    __m256 acc[ROWS_MAX][4];
    for (long m = 0; m < M; m++) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = _mm256_setzero_ps();
    const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    for (long k0 = 0; k0 < K; k0 += K_BLOCK) {
        long k1 = k0 + K_BLOCK < K ? k0 + K_BLOCK : K;
        for (long m = 0; m < M; m += 2) {
            const float *p0 = x + m * K, *p1 = p0 + K;
            __m256 a0 = acc[m][0], a1 = acc[m][1], a2 = acc[m][2], a3 = acc[m][3];
            if (M - m >= 2) {
                __m256 c0 = acc[m + 1][0], c1 = acc[m + 1][1], c2 = acc[m + 1][2], c3 = acc[m + 1][3];
                for (long k = k0; k < k1; k += 8) {
                    __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
                    __m256 v2 = _mm256_loadu_ps(w2 + k), v3 = _mm256_loadu_ps(w3 + k);
                    __m256 p = _mm256_loadu_ps(p0 + k), q = _mm256_loadu_ps(p1 + k);
                    a0 = _mm256_fmadd_ps(p, v0, a0), a1 = _mm256_fmadd_ps(p, v1, a1);
                    a2 = _mm256_fmadd_ps(p, v2, a2), a3 = _mm256_fmadd_ps(p, v3, a3);
                    c0 = _mm256_fmadd_ps(q, v0, c0), c1 = _mm256_fmadd_ps(q, v1, c1);
                    c2 = _mm256_fmadd_ps(q, v2, c2), c3 = _mm256_fmadd_ps(q, v3, c3);
                }
                acc[m + 1][0] = c0, acc[m + 1][1] = c1, acc[m + 1][2] = c2, acc[m + 1][3] = c3;
            } else {
                for (long k = k0; k < k1; k += 8) {
                    __m256 p = _mm256_loadu_ps(p0 + k);
                    a0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w0 + k), a0);
                    a1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w1 + k), a1);
                    a2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w2 + k), a2);
                    a3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w3 + k), a3);
                }
            }
            acc[m][0] = a0, acc[m][1] = a1, acc[m][2] = a2, acc[m][3] = a3;
        }
    }
    for (long m = 0; m < M; m++)
        for (int j = 0; j < 4; j++) y[m * N + j] = hsum(acc[m][j]) + b[j];
}

static void rows_range(const float *x, const float *W, const float *bias, float *y, long M, long N, long K,
                       long n0, long n1) {
    static const float zeros[4] = {0, 0, 0, 0};
    long n = n0;
    if (K >= WIDE_K)
        for (; n + 4 <= n1; n += 4)
            wide_4(x, M, W + n * K, K, y + n, N, bias ? bias + n : zeros);
    for (; n < n1; n++)
        for (long m = 0; m < M; m += 8) {
            long rows = M - m < 8 ? M - m : 8;
            NARROW_FNS[rows](x + m * K, W + n * K, K, y + m * N + n, N, bias ? bias[n] : 0.0f);
        }
}

/* Returns 0, or -1 where the arguments are outside what this kernel computes. */
int rows_product(const float *x, const float *W, const float *bias, float *y, long M, long N, long K, int threads) {
    if (M < 1 || M > ROWS_MAX || K < 8 || K % 8 || N < 1 || threads < 1) return -1;
    if (N * K < 32768) threads = 1; /* a small weight: the team's start costs more than it saves */
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long chunk = ((N + nt - 1) / nt + 3) / 4 * 4, n0 = t * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;
        if (n0 < n1) rows_range(x, W, bias, y, M, N, K, n0, n1);
    }
    return 0;
}
