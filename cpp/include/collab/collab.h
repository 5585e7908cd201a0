/*
 * collab.h: the public C API of the collab native core.
 *
 * Plain C (C99 and C++), no exceptions across this boundary: every function that can fail
 * returns a collab_status, and collab_last_error() gives a readable detail for the calling
 * thread. Memory is owned by the caller: functions write into caller buffers and size queries
 * say how big those must be. Opaque handles have explicit create/free. All functions are
 * thread-safe; a handle (collab_codec) must not be used by two threads at once.
 *
 * Conventions
 *   Names      collab_<object>_<verb>: collab_codec_encode, collab_llm_session_state_get.
 *              Process-wide settings are collab_<setting>_get / _set (collab_simd_set);
 *              read-only properties of a handle are collab_<object>_<property>
 *              (collab_llm_session_n_ctx).
 *   Enums      a struct field holding an enum value is an int32_t (fixed width on every
 *              compiler); its comment names the enum. Function arguments and return values
 *              use the enum types. Unknown values are COLLAB_ERR_INVALID_ARGUMENT.
 *   Arguments  every pointer argument is checked: NULL where a value is required is
 *              COLLAB_ERR_INVALID_ARGUMENT ("<name> is NULL"); an output buffer may be NULL
 *              only with capacity 0 (a size query). A frame pointer is bytes received, not
 *              an argument: NULL is an empty frame, hence COLLAB_ERR_FRAME.
 *   NULL       functions returning a pointer say when it can be NULL. Out-parameters of
 *              handle type (collab_llm_model**, ...) are set to NULL on any failure.
 *   Deprecated the names before this convention still link for one release (declared
 *              with a deprecation attribute, implemented as forwards); see the end of
 *              this file for the list.
 *
 * Sections: common | SLICER feature codec | LLM split execution | Mercury ViT token pruning |
 *           MindFusion trained nets | deprecated names
 */
#ifndef COLLAB_COLLAB_H
#define COLLAB_COLLAB_H

#include <stddef.h>
#include <stdint.h>

#if defined(COLLAB_STATIC)
#define COLLAB_API
#elif defined(_WIN32)
#if defined(COLLAB_BUILDING_LIBRARY)
#define COLLAB_API __declspec(dllexport)
#else
#define COLLAB_API __declspec(dllimport)
#endif
#else
#define COLLAB_API __attribute__((visibility("default")))
#endif

#if defined(COLLAB_NO_DEPRECATION_WARNINGS)
#define COLLAB_DEPRECATED(func, hint) func
#elif defined(__GNUC__) || defined(__clang__)
#define COLLAB_DEPRECATED(func, hint) func __attribute__((deprecated(hint)))
#elif defined(_MSC_VER)
#define COLLAB_DEPRECATED(func, hint) __declspec(deprecated(hint)) func
#else
#define COLLAB_DEPRECATED(func, hint) func
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================
 * Common
 * ==================================================================================== */

#define COLLAB_VERSION_MAJOR 0
#define COLLAB_VERSION_MINOR 1
#define COLLAB_VERSION_PATCH 0

#define COLLAB_MAX_NDIM 8

typedef enum collab_status {
  COLLAB_OK = 0,
  COLLAB_ERR_INVALID_ARGUMENT = 1, /* a parameter is out of range, NULL, or inconsistent  */
  COLLAB_ERR_NONFINITE_INPUT = 2,  /* the input tensor holds NaN or Inf                     */
  COLLAB_ERR_BUFFER_TOO_SMALL = 3, /* the output buffer is too small (see size queries)     */
  COLLAB_ERR_FRAME = 4,            /* truncated, corrupted or malformed frame               */
  COLLAB_ERR_UNSUPPORTED = 5,      /* well-formed input this build cannot handle            */
  COLLAB_ERR_OUT_OF_MEMORY = 6,
  COLLAB_ERR_NO_DEVICE = 7,        /* CUDA asked for, but not compiled in or no GPU present */
  COLLAB_ERR_DEVICE = 8,           /* a CUDA runtime call failed                            */
  COLLAB_ERR_INTERNAL = 9,
  COLLAB_ERR_TRANSPORT = 10        /* an app's transport callback failed (collab_transport)  */
} collab_status;

typedef enum collab_dtype {
  COLLAB_DTYPE_F32 = 0,
  COLLAB_DTYPE_F16 = 1,
  COLLAB_DTYPE_BF16 = 2
} collab_dtype;

typedef enum collab_device {
  COLLAB_DEVICE_CPU = 0,
  COLLAB_DEVICE_CUDA = 1
} collab_device;

/* A dense, contiguous, row-major tensor the caller owns. ndim may be 0 (a scalar). */
typedef struct collab_tensor {
  void* data;
  int32_t dtype; /* collab_dtype */
  int32_t ndim;
  int64_t shape[COLLAB_MAX_NDIM];
  int32_t device;    /* collab_device */
  int32_t device_id; /* CUDA ordinal when device == COLLAB_DEVICE_CUDA */
} collab_tensor;

/* Never NULL: a static string. */
COLLAB_API const char* collab_version(void);
/* Never NULL: a static string ("unknown status" for values outside collab_status). */
COLLAB_API const char* collab_status_string(collab_status status);
/* Detail of the last failure on the calling thread ("" after a success). Never NULL; valid
 * until the next collab call on this thread. */
COLLAB_API const char* collab_last_error(void);

/* Worker threads used by the core (0 = one per hardware thread). Default from the
 * COLLAB_NUM_THREADS environment variable, else the hardware thread count. */
COLLAB_API void collab_num_threads_set(int32_t n);
COLLAB_API int32_t collab_num_threads_get(void);

/* SIMD kernels in use: "avx2", "neon" or "scalar" (never NULL, a static string).
 * collab_simd_set("scalar") forces the portable path (for testing and comparison); "auto"
 * picks the best the CPU supports; NULL or an unknown / unavailable level is refused
 * (COLLAB_ERR_INVALID_ARGUMENT / COLLAB_ERR_UNSUPPORTED). The COLLAB_SIMD environment
 * variable sets the initial choice. */
COLLAB_API const char* collab_simd_get(void);
COLLAB_API collab_status collab_simd_set(const char* level);

/* 1 when CUDA kernels are compiled in and a CUDA device is visible, else 0. */
COLLAB_API int32_t collab_cuda_available(void);

/* ======================================================================================
 * SLICER feature codec (SLICER paper, section 3; frame layout in docs/frame_format.md)
 * ==================================================================================== */

#define COLLAB_FRAME_VERSION 1
#define COLLAB_MAX_BLOCKS 64 /* magnitude blocks per sign (M+, M-) */
#define COLLAB_MAX_QBITS 16  /* largest per-block bit-width */
/* Default limit on the decoded tensor size (collab_codec_decode_params.max_output_bytes). */
#define COLLAB_DEFAULT_MAX_OUTPUT_BYTES ((uint64_t)256 << 20)

typedef enum collab_index_code {
  COLLAB_INDEX_AUTO = -1, /* encoder picks the smallest code for this frame */
  COLLAB_INDEX_CSR = 0,   /* per-block CSR (row pointers + column indices), as in the paper */
  COLLAB_INDEX_BITMAP = 1,       /* occupancy bitmap + per-element block label          */
  COLLAB_INDEX_DELTA_VARINT = 2, /* per-block position gaps, LEB128                    */
  COLLAB_INDEX_DELTA_RICE = 3    /* per-block position gaps, Rice code                  */
} collab_index_code;

typedef struct collab_codec_params {
  double sparsity;                 /* s in [0, 1): keep k = floor((1-s) * numel) elements  */
  double lam;                      /* ATKF asymmetry lambda in [0, 1)                      */
  double delta;                    /* ABQ distortion budget (mean integer mismatch) >= 0   */
  uint64_t seed;                   /* seed for breaking ties at the ATKF threshold         */
  uint32_t blocks_pos;             /* M+ in [1, COLLAB_MAX_BLOCKS]                         */
  uint32_t blocks_neg;             /* M- in [1, COLLAB_MAX_BLOCKS]                         */
  uint32_t n_qbits;                /* entries used in qbits, 1..max(M+, M-)                */
  uint8_t qbits[COLLAB_MAX_BLOCKS];/* bits per block, largest magnitudes first; a short
                                      list repeats its last entry                          */
  int32_t index_code;              /* collab_index_code; COLLAB_INDEX_AUTO by default      */
  int32_t n_threads;               /* 0 = collab_get_num_threads()                        */
} collab_codec_params;

/* Defaults: sparsity 0, lam 0, delta 0, seed 0, blocks (1, 1), qbits {8}, auto index. */
COLLAB_API void collab_codec_params_init(collab_codec_params* params);

/* Limits a decoder applies before touching the output (a few bytes of frame can describe
 * a huge, almost empty tensor). */
typedef struct collab_codec_decode_params {
  uint64_t max_output_bytes; /* refuse frames whose tensor is larger (COLLAB_ERR_FRAME);
                                COLLAB_DEFAULT_MAX_OUTPUT_BYTES by default, UINT64_MAX = off */
} collab_codec_decode_params;

/* Defaults: max_output_bytes = COLLAB_DEFAULT_MAX_OUTPUT_BYTES. */
COLLAB_API void collab_codec_decode_params_init(collab_codec_decode_params* params);

/* Scratch memory reused across calls (one per thread). collab_codec_new returns NULL only
 * when memory runs out (collab_last_error() says so); collab_codec_free(NULL) does nothing. */
typedef struct collab_codec collab_codec;
COLLAB_API collab_codec* collab_codec_new(void);
COLLAB_API void collab_codec_free(collab_codec* codec);

/* SLICER's conservative size bound B^UB in bits for a tensor of this shape: every frame
 * encoded with these parameters and COLLAB_INDEX_AUTO is at most *bits / 8 bytes. */
COLLAB_API collab_status collab_codec_predict_bits(const int64_t* shape, int32_t ndim,
                                                   const collab_codec_params* params, uint64_t* bits);
/* Bytes an output buffer needs for collab_codec_encode with these parameters (any index code). */
COLLAB_API collab_status collab_codec_encode_bound(const int64_t* shape, int32_t ndim,
                                                   const collab_codec_params* params, size_t* nbytes);

/* Encode x into out[0, capacity); *written receives the frame size. x may live on a CUDA
 * device (x->device); the frame is always written to host memory. codec may be NULL. */
COLLAB_API collab_status collab_codec_encode(collab_codec* codec, const collab_tensor* x,
                                             const collab_codec_params* params, void* out,
                                             size_t capacity, size_t* written);

typedef struct collab_frame_info {
  uint32_t version;
  int32_t dtype; /* collab_dtype */
  int32_t ndim;
  int64_t shape[COLLAB_MAX_NDIM];
  uint64_t numel;
  collab_codec_params params; /* as recorded in the frame (n_threads = 0) */
  uint64_t k_keep;
  uint64_t n_pos, n_neg; /* non-zeros kept per sign */
  int32_t index_code;    /* collab_index_code (never AUTO here) */
  uint64_t header_bytes, index_bytes, value_bytes, total_bytes;
} collab_frame_info;

typedef struct collab_block_info {
  int32_t sign;  /* +1 or -1 */
  uint32_t rank; /* 0 = largest magnitudes of that sign */
  uint64_t count;
  uint32_t bits; /* bit-width chosen by ABQ (0 for an empty block) */
  float lo;      /* smallest magnitude in the block (AIQ zero-point) */
  float step;    /* quantization step */
} collab_block_info;

/* Check a frame (checksum, header, and that the sections the header implies fit the bytes
 * received) and describe it. Does not decode the payload. */
COLLAB_API collab_status collab_frame_info_get(const void* frame, size_t len, collab_frame_info* info);
/* Block b in [0, M+ + M-): positive blocks first, then negative ones. */
COLLAB_API collab_status collab_frame_block_get(const void* frame, size_t len, uint32_t b,
                                                collab_block_info* info);

/* Decode into out, which the caller allocated with the frame's dtype and shape (from
 * collab_frame_info_get, after comparing numel x element size with its own limit); out may
 * live on a CUDA device. codec may be NULL; params NULL means the defaults. A frame whose
 * tensor exceeds params->max_output_bytes is COLLAB_ERR_FRAME and out is not touched. */
COLLAB_API collab_status collab_codec_decode(collab_codec* codec, const void* frame, size_t len,
                                             const collab_codec_decode_params* params,
                                             const collab_tensor* out);

/* ======================================================================================
 * LLM split execution on llama.cpp (MindFusion)
 *
 * A model is a GGUF file (a full model, or a head/tail part written by split_gguf). A
 * session is one llama.cpp context on a model (its own KV cache, sequence 0), in one of
 * three roles:
 *   FULL  tokens -> logits                  (device-only / server-only references)
 *   HEAD  tokens -> hidden rows             (the residual stream after the part's last
 *                                            layer, n_embd floats per token)
 *   TAIL  hidden rows -> logits             (rows enter through llama_batch.embd)
 * Positions continue from the session's n_past: a decode call covers positions
 * [n_past, n_past + n) and advances n_past. Sessions on one model are independent and may
 * run on different threads; one session must not be used by two threads at once.
 * Without llama.cpp in the build (COLLAB_LLAMA=OFF) every function below returns
 * COLLAB_ERR_UNSUPPORTED and collab_llm_available() returns 0.
 * ==================================================================================== */

typedef struct collab_llm_model collab_llm_model;
typedef struct collab_llm_session collab_llm_session;

typedef enum collab_llm_role {
  COLLAB_LLM_FULL = 0,
  COLLAB_LLM_HEAD = 1,
  COLLAB_LLM_TAIL = 2
} collab_llm_role;

typedef struct collab_llm_model_info {
  int32_t n_embd;      /* width of a hidden row                               */
  int32_t n_layer;     /* layers in this file                                  */
  int32_t n_vocab;
  int32_t n_ctx_train;
  int32_t bos, eos;    /* -1 when the model has none                           */
  int32_t split_part;  /* 0 full model, 1 head part, 2 tail part (collab.split.*) */
  int32_t split_at;    /* split point l of a part, else 0                      */
  int32_t n_layer_total; /* layers of the full model the part came from        */
  char arch[32];
} collab_llm_model_info;

typedef struct collab_llm_session_params {
  int32_t role;      /* collab_llm_role                                        */
  uint32_t n_ctx;    /* KV cache size in tokens; 0 = min(2048, n_ctx_train)     */
  uint32_t n_batch;  /* tokens per llama_decode call; 0 = 256                    */
  int32_t n_threads; /* CPU threads; 0 = 2                                     */
} collab_llm_session_params;

/* 1 when the core was built with llama.cpp. */
COLLAB_API int32_t collab_llm_available(void);
/* Defaults: role FULL, n_ctx 0, n_batch 0, n_threads 0. */
COLLAB_API void collab_llm_session_params_init(collab_llm_session_params* params);

/* Load a GGUF (CPU, mmap). n_threads is unused at load time; sessions choose theirs.
 * *model is NULL after any failure. */
COLLAB_API collab_status collab_llm_model_load(const char* path, collab_llm_model** model);
COLLAB_API void collab_llm_model_free(collab_llm_model* model);
/* Baseline for comparison: llama.cpp's own RPC backend. Loads the model with its last
 * n_remote_layers layers (n_layer - l + 1 = layers [l, L) plus the output layer) placed on
 * the ggml rpc-server at endpoint ("host:port"); the rest runs here. FULL sessions only. */
COLLAB_API collab_status collab_llm_model_load_rpc(const char* path, const char* endpoint, int32_t n_remote_layers,
                                                   collab_llm_model** model);
COLLAB_API collab_status collab_llm_model_info_get(const collab_llm_model* model, collab_llm_model_info* info);

/* Text -> token ids (capacity in tokens; COLLAB_ERR_BUFFER_TOO_SMALL sets *n_tokens to the
 * count needed). add_special: BOS etc. as the model wants; parse_special: "<|im_start|>"
 * and the like become control tokens. */
COLLAB_API collab_status collab_llm_model_tokenize(const collab_llm_model* model, const char* text, size_t len,
                                                   int32_t add_special, int32_t parse_special, int32_t* tokens,
                                                   size_t capacity, size_t* n_tokens);
/* Token id -> UTF-8 bytes (not NUL-terminated; *written = bytes, or bytes needed). */
COLLAB_API collab_status collab_llm_model_token_to_piece(const collab_llm_model* model, int32_t token, char* buf,
                                                         size_t capacity, size_t* written);
/* 1 if the token ends generation (EOS, EOT, ...), else 0 (also for out-of-range ids and a
 * NULL model). */
COLLAB_API int32_t collab_llm_model_token_is_eog(const collab_llm_model* model, int32_t token);
/* The model's chat template applied to one user message plus the assistant prefix. */
COLLAB_API collab_status collab_llm_model_chat_prompt(const collab_llm_model* model, const char* user, char* buf,
                                                      size_t capacity, size_t* written);

/* *session is NULL after any failure. */
COLLAB_API collab_status collab_llm_session_new(collab_llm_model* model, const collab_llm_session_params* params,
                                                collab_llm_session** session);
COLLAB_API void collab_llm_session_free(collab_llm_session* session);
/* -1 for a NULL session. */
COLLAB_API int32_t collab_llm_session_n_past(const collab_llm_session* session);
COLLAB_API int32_t collab_llm_session_n_ctx(const collab_llm_session* session);
/* Forget positions >= n_past (0 clears the session). */
COLLAB_API collab_status collab_llm_session_truncate(collab_llm_session* session, int32_t n_past);

/* FULL: logits of the last n_outputs tokens (n_outputs x n_vocab floats, in order) into out.
 * HEAD: hidden rows of all n tokens (n x n_embd floats) into out; n_outputs is ignored.
 * capacity is in floats. */
COLLAB_API collab_status collab_llm_session_decode_tokens(collab_llm_session* session, const int32_t* tokens,
                                                          size_t n, int32_t n_outputs, float* out, size_t capacity);
/* TAIL / FULL: rows (n x n_embd floats, finite) in; logits of the last n_outputs rows out.
 * HEAD: input embedding rows (a VLM's image rows) in; hidden rows of all n rows out (n x n_embd
 * floats; n_outputs is ignored). */
COLLAB_API collab_status collab_llm_session_decode_rows(collab_llm_session* session, const float* rows, size_t n,
                                                        int32_t n_outputs, float* logits, size_t capacity);

/* KV cache of the session (llama_state_seq_get_data / set_data on sequence 0), for handing
 * a prefilled head over to another host. set replaces the session's cache and n_past; the
 * bytes must come from a session on the same model file with the same n_ctx or smaller. */
COLLAB_API collab_status collab_llm_session_state_size(collab_llm_session* session, size_t* nbytes);
COLLAB_API collab_status collab_llm_session_state_get(collab_llm_session* session, void* buf, size_t capacity,
                                                      size_t* written);
COLLAB_API collab_status collab_llm_session_state_set(collab_llm_session* session, const void* buf, size_t len);

/* Streaming generation. The callback receives each token as soon as it is decoded: its id, its
 * text (UTF-8 bytes, not NUL-terminated; one character may span two tokens) and user_data. It
 * returns 0 to go on, non-zero to stop after this token (cancellation: nothing more is
 * decoded). */
typedef int32_t (*collab_llm_token_callback)(int32_t token, const char* piece, size_t piece_len, void* user_data);
/* Greedy generation from the prompt tokens (n_tokens >= 1, appended at the session's n_past).
 * session: a FULL session on model, tail NULL; or a HEAD session on model (a head part) with
 * tail a TAIL session of the same split: head then tail per token, the server side of
 * kv-handoff. Stops after an end-of-generation token, after max_tokens (>= 1), when the
 * context is full or when the callback returns non-zero. session, model, tokens and callback
 * must not be NULL; tail, user_data and n_generated may be. *n_generated: tokens handed to the
 * callback, also when an error stops the generation (0 when an argument is refused). */
COLLAB_API collab_status collab_llm_session_decode_stream(collab_llm_session* session, collab_llm_session* tail,
                                                          const collab_llm_model* model, const int32_t* tokens,
                                                          size_t n_tokens, int32_t max_tokens,
                                                          collab_llm_token_callback callback, void* user_data,
                                                          int32_t* n_generated);

/* ======================================================================================
 * VLM image encoder (llama.cpp's multimodal library, mtmd)
 *
 * An mmproj GGUF (ViT + projector, projector type "internvl") turns an RGB image into rows
 * of the text model's width. Those rows enter a HEAD, TAIL or FULL session through
 * collab_llm_session_decode_rows (llama_batch.embd) between the prompt's text tokens: a
 * HEAD session returns the hidden rows after its layers for them, as for tokens.
 * ==================================================================================== */

typedef struct collab_vlm_vision collab_vlm_vision;

typedef struct collab_vlm_vision_info {
  int32_t image_size; /* the encoder takes image_size x image_size RGB images */
  int32_t n_tokens;   /* rows per image */
  int32_t n_embd;     /* row width (= the text model's n_embd) */
} collab_vlm_vision_info;

/* 1 if this core was built with libmtmd, else 0 (the functions below then report
 * COLLAB_ERR_UNSUPPORTED). */
COLLAB_API int32_t collab_vlm_available(void);
/* Load an mmproj for a text model (any part of it: its n_embd must equal the mmproj's
 * projection width, else COLLAB_ERR_INVALID_ARGUMENT). The model must outlive the vision.
 * Truncated or foreign files are COLLAB_ERR_INVALID_ARGUMENT. *vision is NULL after any failure. */
COLLAB_API collab_status collab_vlm_vision_load(const char* mmproj_path, const collab_llm_model* model,
                                                int32_t n_threads, collab_vlm_vision** vision);
COLLAB_API void collab_vlm_vision_free(collab_vlm_vision* vision);
COLLAB_API collab_status collab_vlm_vision_info_get(const collab_vlm_vision* vision, collab_vlm_vision_info* info);
/* rgb: ny rows of nx pixels x 3 bytes, nx = ny = image_size (resize before: other sizes are
 * COLLAB_ERR_INVALID_ARGUMENT). rows: n_tokens x n_embd floats (capacity in floats). */
COLLAB_API collab_status collab_vlm_vision_encode(collab_vlm_vision* vision, const uint8_t* rgb, int32_t nx,
                                                  int32_t ny, float* rows, size_t capacity);

/* ======================================================================================
 * Mercury ViT token pruning (Mercury paper, Algorithm 1, Eq. 11-18)
 * ==================================================================================== */

/* Number of tokens K pruned from n_patches grid tokens at this rate: floor(rate * N + 0.5).
 * Rates above 1 - 1/region^2 (75% for region 2) are COLLAB_ERR_INVALID_ARGUMENT. */
COLLAB_API collab_status collab_vit_prune_count(int64_t n_patches, int32_t region, double rate,
                                                int64_t* n_prune);

/* Regionally decentralized pruning on the first layer's attention outputs attn, shaped
 * (T, C) or (B, T, C), f32/f16/bf16, on the CPU or a CUDA device. With has_cls = 1 token 0
 * is CLS: always kept and not part of the grid. The other N = T - has_cls tokens form a
 * row-major k x k grid (k = sqrt(N), region divides k). Cosine similarity (double), score
 * s_i = sum_j Sim_ij, one preserved token per region x region subregion (argmax, first in
 * row-major order on ties), then the n_prune other tokens with the largest maximum
 * similarity to the preserved ones are pruned (lower index first on ties).
 * kept (host memory, kept_len = B * (T - n_prune) entries) receives the kept token
 * indices per image in ascending order. NaN/Inf input: COLLAB_ERR_NONFINITE_INPUT. */
COLLAB_API collab_status collab_vit_regional_prune(const collab_tensor* attn, int32_t region,
                                                   int32_t has_cls, int64_t n_prune, int64_t* kept,
                                                   size_t kept_len);

/* ======================================================================================
 * MindFusion trained nets: decoding shortcut projection and representation codec
 * (run on ggml's CPU backend from the libggml that llama-cpp-python ships)
 *
 * A net comes from a "CLFN" file (format: python/collab/llm/artifact.py): a fixed header
 * (kind, n_embd, split point, layer count, code size, sha256 of the GGUF it was trained
 * for), a JSON record the runtime skips, fixed-shape f32/f16 tensors, and a CRC-32 trailer.
 *   SHORTCUT  project: token embeddings (n, d) -> tail input rows (n, d)
 *             y = x + W4 g(W3 g(W2 g(W1 x + b1) + b2) + b3) + b4   (d -> d -> 4d -> d -> d)
 *   CODEC     encode: rows (n, d) -> codes (n, k);  decode: codes (n, k) -> rows (n, d)
 *             (two FC layers each way through d/2)
 * g is GELU in its tanh form. A net must not be used by two threads at once. Without
 * llama.cpp in the build (COLLAB_LLAMA=OFF) every function below returns
 * COLLAB_ERR_UNSUPPORTED.
 * ==================================================================================== */

typedef struct collab_fcnet collab_fcnet;

typedef enum collab_fcnet_kind {
  COLLAB_FCNET_ANY = 0, /* as an expectation only: any kind is accepted */
  COLLAB_FCNET_SHORTCUT = 1,
  COLLAB_FCNET_CODEC = 2
} collab_fcnet_kind;

typedef enum collab_fcnet_op {
  COLLAB_FCNET_PROJECT = 0, /* shortcut: embeddings -> rows */
  COLLAB_FCNET_ENCODE = 1,  /* codec: rows -> codes         */
  COLLAB_FCNET_DECODE = 2   /* codec: codes -> rows         */
} collab_fcnet_op;

typedef struct collab_fcnet_info {
  int32_t kind;          /* collab_fcnet_kind (never ANY here)          */
  int32_t n_embd;        /* d                                           */
  int32_t split_at;      /* layer whose input rows the net produces     */
  int32_t n_layer_total; /* layers of the full model                    */
  int32_t code_dim;      /* k (codec), 0 (shortcut)                     */
  uint8_t model_digest[32]; /* sha256 of the GGUF the net was trained for */
} collab_fcnet_info;

/* Parse and check a CLFN image. Expectations: kind (COLLAB_FCNET_ANY: not checked), n_embd
 * (0: not checked) and model_digest, 32 bytes of sha256 (NULL: not checked). buf is bytes
 * read from a file, not an argument: NULL is an empty image, hence COLLAB_ERR_FRAME, like
 * corrupt or truncated data and a bad checksum; a net for another kind / width / model is
 * COLLAB_ERR_INVALID_ARGUMENT; collab_last_error() says which. net must not be NULL; *net
 * is NULL after any failure. */
COLLAB_API collab_status collab_fcnet_load(const void* buf, size_t len, collab_fcnet_kind kind, int32_t n_embd,
                                           const uint8_t* model_digest, collab_fcnet** net);
/* The same from a file; path and net must not be NULL. */
COLLAB_API collab_status collab_fcnet_load_file(const char* path, collab_fcnet_kind kind, int32_t n_embd,
                                                const uint8_t* model_digest, collab_fcnet** net);
/* collab_fcnet_free(NULL) does nothing. */
COLLAB_API void collab_fcnet_free(collab_fcnet* net);
COLLAB_API collab_status collab_fcnet_info_get(const collab_fcnet* net, collab_fcnet_info* info);
/* Run op (PROJECT for a shortcut, ENCODE / DECODE for a codec) on n_rows >= 1 rows of in
 * (row-major, width d, or k for DECODE), writing n_rows rows (width k for ENCODE, else d)
 * to out; out_len is in floats (too small: COLLAB_ERR_BUFFER_TOO_SMALL). net, in and out
 * must not be NULL. NaN/Inf input: COLLAB_ERR_NONFINITE_INPUT. n_threads 0 = one. */
COLLAB_API collab_status collab_fcnet_apply(collab_fcnet* net, collab_fcnet_op op, const float* in, size_t n_rows,
                                            float* out, size_t out_len, int32_t n_threads);

/* ======================================================================================
 * VLM split, device side: image bytes + question in, answer tokens out (one call)
 *
 * What a phone app links for the split VLM. collab_vlm_device_ask decodes the image (PNG or
 * JPEG), resizes it to the mmproj's image_size, encodes it (mtmd), runs the head part's
 * layers [0, l) over the prompt (text, image rows, text), sends the rows to the server, the
 * image rows as codes of the trained FC codec (MindFusion Eq. 1-2) when one is given, else
 * exact, and hands each answer token to a callback as the server streams it. The server is
 * `collab vlm serve` (task "llm"); the messages are byte for byte those of the Python device
 * (collab.vlm.split.VlmDevice), so either device talks to either server.
 *
 * Transport: the app's own. collab speaks the Session rpc of proto/collab.proto through a
 * collab_transport (open a stream with the session meta, send and receive (kind, payload,
 * meta) messages, close), so an app plugs in its gRPC stub (grpc-swift, grpc-java, grpc C++)
 * or any ordered, reliable message stream. A callback returning non-zero fails the call with
 * COLLAB_ERR_TRANSPORT (the session is then closed with cancel = 1).
 * ==================================================================================== */

typedef struct collab_meta_entry {
  const char* key;   /* NUL-terminated UTF-8 */
  const char* value;
} collab_meta_entry;

typedef struct collab_message {
  const char* kind;              /* NUL-terminated ("rows", "state", "token", ...)      */
  const uint8_t* payload;        /* payload_len bytes; may be NULL when payload_len is 0 */
  size_t payload_len;
  const collab_meta_entry* meta; /* n_meta entries; may be NULL when n_meta is 0        */
  size_t n_meta;
} collab_message;

typedef struct collab_transport {
  void* user_data; /* passed to every callback */
  /* Open a session on task: the proto's "collab.open" frame with this meta. */
  int32_t (*open)(void* user_data, const char* task, const collab_meta_entry* meta, size_t n_meta);
  /* Send one message (the callee copies what it keeps). */
  int32_t (*send)(void* user_data, const collab_message* message);
  /* The server's next message into *message. Its pointers belong to the transport and must
   * stay valid until the next recv or close. timeout_ms < 0: no limit of collab's. */
  int32_t (*recv)(void* user_data, collab_message* message, int32_t timeout_ms);
  /* End the session, once per successful open: cancel = 0 after a complete answer (the
   * "end" message was sent), 1 to abort (early stop, error: the server stops decoding). */
  void (*close)(void* user_data, int32_t cancel);
} collab_transport;

typedef enum collab_vlm_mode {
  COLLAB_VLM_SHORTCUT = 0,   /* rows once; the server decodes with its trained shortcut    */
  COLLAB_VLM_KV_HANDOFF = 1, /* head KV cache + rows once; the server runs head and tail   */
  COLLAB_VLM_ROUNDTRIP = 2   /* rows, then one hidden row per token (a round trip each)     */
} collab_vlm_mode;

typedef enum collab_vlm_code_dtype { /* how FC codes of the image rows travel */
  COLLAB_VLM_CODE_F32 = 0,
  COLLAB_VLM_CODE_F16 = 1,
  COLLAB_VLM_CODE_INT8 = 2 /* one f32 scale per row (absmax / 127) */
} collab_vlm_code_dtype;

typedef struct collab_vlm_device_params {
  int32_t mode;        /* collab_vlm_mode                                                */
  int32_t code_dtype;  /* collab_vlm_code_dtype, for the image rows when a codec is given */
  int32_t max_tokens;  /* answer tokens at most, in [1, 4096]                             */
  uint32_t n_ctx;      /* the head session's context (prompt + answer)                    */
  int32_t n_threads;   /* CPU threads of the head session and the FC encoder              */
  int32_t timeout_ms;  /* per server message; < 0: none                                   */
  const char* task;    /* server task name; NULL = "llm"                                  */
} collab_vlm_device_params;

typedef struct collab_vlm_answer_info {
  int32_t n_prompt;      /* prompt positions: text tokens + image rows          */
  int32_t n_image_rows;
  int32_t n_tokens;      /* tokens handed to the callback                       */
  char stop[16];         /* "eog", "max_tokens", "context", "deadline" (the server's), "callback" */
  uint64_t bytes_up;     /* kind + payload + meta keys and values, every message sent */
  uint64_t bytes_down;   /* the same for every message received                  */
  uint64_t prefill_bytes; /* payload of the prefill rows message                  */
  uint64_t state_bytes;  /* payload of the KV-state message (kv-handoff), else 0  */
  double encode_s;       /* image decode + resize + mtmd encode                  */
  double head_s;         /* head layers + row coding (+ KV state)                */
  double ttft_s;         /* call start -> first token handed to the callback     */
  double total_s;        /* call start -> last token                             */
} collab_vlm_answer_info;

typedef struct collab_vlm_device collab_vlm_device;

/* The resize the device applies before the encoder, for apps that show or cache what the
 * model sees: RGB (h rows of w pixels x 3 bytes, sides 1..8192) -> size x size RGB into out
 * (capacity in bytes, at least size * size * 3). Nearest-neighbour repeat when a square
 * image's side divides size, else Pillow's BICUBIC (8-bit fixed point, horizontal pass
 * first). Available in every build. */
COLLAB_API collab_status collab_vlm_image_resize(const uint8_t* rgb, uint32_t w, uint32_t h, uint32_t size,
                                                 uint8_t* out, size_t capacity);

/* Defaults: mode SHORTCUT, code_dtype F16, max_tokens 16, n_ctx 512, n_threads 2,
 * timeout_ms 300000, task NULL. */
COLLAB_API void collab_vlm_device_params_init(collab_vlm_device_params* params);
/* head: a head part (split_gguf) of the VLM's text model; vision: its mmproj loaded on that
 * model; image_codec: NULL (image rows go exact, f32) or a CODEC net for this split point
 * and model (its digest must be the head's source digest). The device borrows all three:
 * they must outlive it. *device is NULL after any failure. */
COLLAB_API collab_status collab_vlm_device_new(collab_llm_model* head, collab_vlm_vision* vision,
                                               collab_fcnet* image_codec, const collab_vlm_device_params* params,
                                               collab_vlm_device** device);
COLLAB_API void collab_vlm_device_free(collab_vlm_device* device);
/* Answer a question about one image. image: PNG or JPEG bytes (at most 64 MiB, sides at most
 * 8192; corrupt or other formats are COLLAB_ERR_INVALID_ARGUMENT). question: UTF-8, non-empty
 * after trimming, at most 4096 bytes. callback gets each answer token (id, text piece) as it
 * arrives; non-zero stops (stop "callback"). info may be NULL. A device answers one question
 * at a time. */
COLLAB_API collab_status collab_vlm_device_ask(collab_vlm_device* device, const uint8_t* image, size_t image_len,
                                               const char* question, const collab_transport* transport,
                                               collab_llm_token_callback callback, void* user_data,
                                               collab_vlm_answer_info* info);

/* ======================================================================================
 * Deprecated names (kept for one release; each forwards to the function named in its
 * message). Define COLLAB_NO_DEPRECATION_WARNINGS to silence the warnings while migrating.
 * collab_decode keeps its old behaviour: no limit on the output size.
 * ==================================================================================== */

COLLAB_DEPRECATED(COLLAB_API void collab_set_num_threads(int32_t n), "use collab_num_threads_set");
COLLAB_DEPRECATED(COLLAB_API int32_t collab_get_num_threads(void), "use collab_num_threads_get");
COLLAB_DEPRECATED(COLLAB_API const char* collab_get_simd(void), "use collab_simd_get");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_set_simd(const char* level), "use collab_simd_set");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_predict_bits(const int64_t* shape, int32_t ndim,
                                                               const collab_codec_params* params, uint64_t* bits),
                  "use collab_codec_predict_bits");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_encode_bound(const int64_t* shape, int32_t ndim,
                                                               const collab_codec_params* params, size_t* nbytes),
                  "use collab_codec_encode_bound");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_encode(collab_codec* codec, const collab_tensor* x,
                                                         const collab_codec_params* params, void* out,
                                                         size_t capacity, size_t* written),
                  "use collab_codec_encode");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_decode(collab_codec* codec, const void* frame, size_t len,
                                                         const collab_tensor* out),
                  "use collab_codec_decode (it takes decode params with an output size limit)");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_tokenize(const collab_llm_model* model, const char* text,
                                                               size_t len, int32_t add_special,
                                                               int32_t parse_special, int32_t* tokens,
                                                               size_t capacity, size_t* n_tokens),
                  "use collab_llm_model_tokenize");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_token_to_piece(const collab_llm_model* model, int32_t token,
                                                                     char* buf, size_t capacity, size_t* written),
                  "use collab_llm_model_token_to_piece");
COLLAB_DEPRECATED(COLLAB_API int32_t collab_llm_token_is_eog(const collab_llm_model* model, int32_t token),
                  "use collab_llm_model_token_is_eog");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_chat_prompt(const collab_llm_model* model, const char* user,
                                                                  char* buf, size_t capacity, size_t* written),
                  "use collab_llm_model_chat_prompt");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_decode_tokens(collab_llm_session* session,
                                                                    const int32_t* tokens, size_t n,
                                                                    int32_t n_outputs, float* out, size_t capacity),
                  "use collab_llm_session_decode_tokens");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_decode_rows(collab_llm_session* session, const float* rows,
                                                                  size_t n, int32_t n_outputs, float* logits,
                                                                  size_t capacity),
                  "use collab_llm_session_decode_rows");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_state_size(collab_llm_session* session, size_t* nbytes),
                  "use collab_llm_session_state_size");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_state_get(collab_llm_session* session, void* buf,
                                                                size_t capacity, size_t* written),
                  "use collab_llm_session_state_get");
COLLAB_DEPRECATED(COLLAB_API collab_status collab_llm_state_set(collab_llm_session* session, const void* buf,
                                                                size_t len),
                  "use collab_llm_session_state_set");

#ifdef __cplusplus
}
#endif

#endif /* COLLAB_COLLAB_H */
