/* The C API names from before the collab_<object>_<verb> convention still link and behave
 * like the new ones for one release. Plain C; compiled with the deprecation warnings off
 * (a separate ctest checks that the header does warn). */
#include <collab/collab.h>

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      ++failures;                                                        \
      fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                                    \
  } while (0)

int main(void) {
  enum { N = 64 };
  float x[N], y_old[N], y_new[N];
  unsigned seed = 7;
  for (int i = 0; i < N; ++i) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)(seed >> 8) / (float)(1u << 24) - 0.5f;
  }
  collab_tensor t;
  memset(&t, 0, sizeof t);
  t.data = x;
  t.dtype = COLLAB_DTYPE_F32;
  t.ndim = 2;
  t.shape[0] = 8;
  t.shape[1] = 8;
  t.device = COLLAB_DEVICE_CPU;
  collab_codec_params p;
  collab_codec_params_init(&p);
  p.sparsity = 0.5;

  EXPECT(strcmp(collab_get_simd(), collab_simd_get()) == 0);
  EXPECT(collab_set_simd("scalar") == COLLAB_OK && strcmp(collab_simd_get(), "scalar") == 0);
  EXPECT(collab_set_simd("auto") == COLLAB_OK);
  collab_set_num_threads(2);
  EXPECT(collab_get_num_threads() == 2 && collab_num_threads_get() == 2);
  collab_num_threads_set(0);

  uint64_t bits_old = 0, bits_new = 0;
  EXPECT(collab_predict_bits(t.shape, 2, &p, &bits_old) == COLLAB_OK);
  EXPECT(collab_codec_predict_bits(t.shape, 2, &p, &bits_new) == COLLAB_OK && bits_old == bits_new);
  size_t cap_old = 0, cap_new = 0;
  EXPECT(collab_encode_bound(t.shape, 2, &p, &cap_old) == COLLAB_OK);
  EXPECT(collab_codec_encode_bound(t.shape, 2, &p, &cap_new) == COLLAB_OK && cap_old == cap_new);

  unsigned char f_old[4096], f_new[4096];
  size_t n_old = 0, n_new = 0;
  EXPECT(cap_new <= sizeof f_old);
  EXPECT(collab_encode(NULL, &t, &p, f_old, sizeof f_old, &n_old) == COLLAB_OK);
  EXPECT(collab_codec_encode(NULL, &t, &p, f_new, sizeof f_new, &n_new) == COLLAB_OK);
  EXPECT(n_old == n_new && memcmp(f_old, f_new, n_new) == 0);

  collab_tensor o = t;
  o.data = y_old;
  EXPECT(collab_decode(NULL, f_old, n_old, &o) == COLLAB_OK);
  o.data = y_new;
  EXPECT(collab_codec_decode(NULL, f_new, n_new, NULL, &o) == COLLAB_OK);
  EXPECT(memcmp(y_old, y_new, sizeof y_new) == 0);

  /* LLM names: same status with or without llama.cpp in the build (NULL session/model). */
  size_t nbytes = 0;
  EXPECT(collab_llm_state_size(NULL, &nbytes) == collab_llm_session_state_size(NULL, &nbytes));
  EXPECT(collab_llm_state_get(NULL, NULL, 0, &nbytes) == collab_llm_session_state_get(NULL, NULL, 0, &nbytes));
  EXPECT(collab_llm_state_set(NULL, NULL, 0) == collab_llm_session_state_set(NULL, NULL, 0));
  EXPECT(collab_llm_decode_tokens(NULL, NULL, 0, 0, NULL, 0) ==
         collab_llm_session_decode_tokens(NULL, NULL, 0, 0, NULL, 0));
  EXPECT(collab_llm_decode_rows(NULL, NULL, 0, 0, NULL, 0) == collab_llm_session_decode_rows(NULL, NULL, 0, 0, NULL, 0));
  EXPECT(collab_llm_tokenize(NULL, "a", 1, 1, 1, NULL, 0, &nbytes) ==
         collab_llm_model_tokenize(NULL, "a", 1, 1, 1, NULL, 0, &nbytes));
  EXPECT(collab_llm_token_to_piece(NULL, 0, NULL, 0, &nbytes) == collab_llm_model_token_to_piece(NULL, 0, NULL, 0, &nbytes));
  EXPECT(collab_llm_token_is_eog(NULL, 0) == 0 && collab_llm_model_token_is_eog(NULL, 0) == 0);
  EXPECT(collab_llm_chat_prompt(NULL, "hi", NULL, 0, &nbytes) == collab_llm_model_chat_prompt(NULL, "hi", NULL, 0, &nbytes));
  EXPECT(collab_llm_session_state_size(NULL, &nbytes) != COLLAB_OK);

  printf(failures ? "FAILED\n" : "deprecated names: OK\n");
  return failures ? 1 : 0;
}
