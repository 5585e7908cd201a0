/* A plain C program using collab's C API: encode a feature map with the SLICER codec,
 * inspect the frame, decode it, and check the result. Builds against an installed collab
 * with find_package(collab) (see CMakeLists.txt here) and needs no Python. */
#include <collab/collab.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                   \
  do {                                                                                \
    collab_status st_ = (call);                                                       \
    if (st_ != COLLAB_OK) {                                                           \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, collab_status_string(st_),       \
              collab_last_error());                                                   \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main(void) {
  enum { ROWS = 197, COLS = 384 };
  float* x = malloc(sizeof(float) * ROWS * COLS);
  float* y = malloc(sizeof(float) * ROWS * COLS);
  unsigned seed = 12345;
  for (int i = 0; i < ROWS * COLS; ++i) { /* deterministic pseudo-random features */
    seed = seed * 1103515245u + 12345u;
    x[i] = ((float)(seed >> 8) / (float)(1u << 24) - 0.5f) * 4.0f;
  }

  collab_tensor in = {0};
  in.data = x;
  in.dtype = COLLAB_DTYPE_F32;
  in.ndim = 2;
  in.shape[0] = ROWS;
  in.shape[1] = COLS;
  in.device = COLLAB_DEVICE_CPU;

  collab_codec_params params;
  collab_codec_params_init(&params);
  params.sparsity = 0.75;
  params.blocks_pos = params.blocks_neg = 3;
  params.n_qbits = 3;
  params.qbits[0] = 8;
  params.qbits[1] = 4;
  params.qbits[2] = 2;

  size_t cap = 0;
  CHECK(collab_codec_encode_bound(in.shape, in.ndim, &params, &cap));
  unsigned char* frame = malloc(cap);
  collab_codec* codec = collab_codec_new();
  size_t len = 0;
  CHECK(collab_codec_encode(codec, &in, &params, frame, cap, &len));

  collab_frame_info info;
  CHECK(collab_frame_info_get(frame, len, &info));
  uint64_t bound_bits = 0;
  CHECK(collab_codec_predict_bits(in.shape, in.ndim, &params, &bound_bits));

  collab_tensor out = in;
  out.data = y;
  CHECK(collab_codec_decode(codec, frame, len, NULL, &out));

  size_t nonzero = 0;
  double max_err = 0.0;
  for (int i = 0; i < ROWS * COLS; ++i) {
    if (y[i] != 0.0f) {
      ++nonzero;
      double e = fabs((double)y[i] - (double)x[i]);
      if (e > max_err) max_err = e;
    }
  }
  printf("collab %s (%s kernels): %d floats -> %zu bytes (%.1fx smaller), bound %llu bytes, "
         "index code %d, kept %zu (k_keep %llu), max error of kept %.4f\n",
         collab_version(), collab_simd_get(), ROWS * COLS, len, (double)(ROWS * COLS * 4) / (double)len,
         (unsigned long long)(bound_bits / 8), (int)info.index_code, nonzero, (unsigned long long)info.k_keep,
         max_err);

  /* A damaged frame is reported, never crashes. */
  frame[len / 2] ^= 0x10;
  collab_status st = collab_codec_decode(codec, frame, len, NULL, &out);
  printf("corrupted frame -> %s: %s\n", collab_status_string(st), collab_last_error());

  int ok = nonzero == info.k_keep && len * 8 <= bound_bits && st == COLLAB_ERR_FRAME && max_err < 0.5;
  collab_codec_free(codec);
  free(frame);
  free(x);
  free(y);
  printf(ok ? "OK\n" : "FAILED\n");
  return ok ? 0 : 1;
}
