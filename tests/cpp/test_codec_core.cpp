// Tests of the native core without Python: kernel tables agree, encode/decode properties,
// error codes, thread determinism, concurrent use, hostile frames, and golden frames
// produced by the numpy reference (so the ARM64/NEON build is checked against it too).
//
//   test_codec_core [golden_dir]
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "collab/collab.h"
#include "common/crc32.hpp"
#include "common/dtype.hpp"
#include "simd/kernels.hpp"

namespace {

int g_failures = 0;
#define EXPECT(cond, ...)                                              \
  do {                                                                 \
    if (!(cond)) {                                                     \
      ++g_failures;                                                    \
      std::fprintf(stderr, "%s:%d: EXPECT(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                               \
      std::fprintf(stderr, "\n");                                      \
    }                                                                  \
  } while (0)

std::mt19937_64 rng(std::random_device{}());

std::vector<float> normal(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

collab_tensor tensor(void* data, collab_dtype dt, std::vector<int64_t> shape) {
  collab_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.ndim = int32_t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
  t.device = COLLAB_DEVICE_CPU;
  return t;
}

collab_codec_params params(double s, uint32_t bp = 1, uint32_t bn = 1, std::vector<int> q = {8}, double delta = 0,
                           double lam = 0, uint64_t seed = 0) {
  collab_codec_params p;
  collab_codec_params_init(&p);
  p.sparsity = s;
  p.blocks_pos = bp;
  p.blocks_neg = bn;
  p.n_qbits = uint32_t(q.size());
  for (size_t i = 0; i < q.size(); ++i) p.qbits[i] = uint8_t(q[i]);
  p.delta = delta;
  p.lam = lam;
  p.seed = seed;
  return p;
}

std::vector<uint8_t> encode(const collab_tensor& x, const collab_codec_params& p, collab_status* st = nullptr) {
  size_t cap = 0;
  collab_status s0 = collab_codec_encode_bound(x.shape, x.ndim, &p, &cap);
  std::vector<uint8_t> out(cap);
  size_t n = 0;
  collab_status s = s0 != COLLAB_OK ? s0 : collab_codec_encode(nullptr, &x, &p, out.data(), out.size(), &n);
  if (st) *st = s;
  out.resize(s == COLLAB_OK ? n : 0);
  return out;
}

// ---------------------------------------------------------------------------------------

void test_kernels_agree() {
  std::vector<const collab::Kernels*> tables = {&collab::scalar_kernels()};
  if (auto* k = collab::avx2_kernels()) {
    if (collab_simd_set("avx2") == COLLAB_OK) tables.push_back(k);
  }
  if (auto* k = collab::neon_kernels()) tables.push_back(k);
  collab_simd_set("auto");
  std::printf("kernel tables tested: ");
  for (auto* t : tables) std::printf("%s ", t->name);
  std::printf("\n");

  const size_t n = 1037;  // not a multiple of any vector width
  std::vector<float> v = normal(n, 3.0f);
  // edge values: zeros, subnormals, huge, halfway cases for f16/bf16 rounding
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x007fffffu, 0x7f7fffffu, 0x33000000u,
                               0x33000001u, 0x387fe000u, 0x477fefffu, 0x477ff000u, 0x3f808000u, 0x3f818000u};
  for (size_t i = 0; i < sizeof specials / 4; ++i) v[i] = collab::bits_f32(specials[i]);
  std::vector<uint16_t> h(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    h[i] = collab::f32_to_f16(v[i]);
    b[i] = collab::f32_to_bf16(v[i]);
  }
  const auto* ref = tables[0];
  for (auto* t : tables) {
    for (collab_dtype dt : {COLLAB_DTYPE_F32, COLLAB_DTYPE_F16, COLLAB_DTYPE_BF16}) {
      const void* src = dt == COLLAB_DTYPE_F32 ? (const void*)v.data() : dt == COLLAB_DTYPE_F16 ? (const void*)h.data() : (const void*)b.data();
      std::vector<uint32_t> k0(n), k1(n);
      bool ok0 = ref->abs_bits(src, dt, n, k0.data()), ok1 = t->abs_bits(src, dt, n, k1.data());
      EXPECT(ok0 == ok1 && k0 == k1, "abs_bits differs (%s, dtype %d)", t->name, int(dt));
    }
    std::vector<float> bad = v;
    bad[n - 2] = NAN;
    std::vector<uint32_t> k(n);
    EXPECT(!t->abs_bits(bad.data(), COLLAB_DTYPE_F32, n, k.data()), "%s misses a NaN in the tail", t->name);
    bad[n - 2] = 1.0f;
    bad[3] = INFINITY;
    EXPECT(!t->abs_bits(bad.data(), COLLAB_DTYPE_F32, n, k.data()), "%s misses an Inf", t->name);

    std::vector<float> mag(n);
    for (size_t i = 0; i < n; ++i) mag[i] = std::fabs(v[i]) + 0.5f;
    float lo0, hi0, lo1, hi1;
    ref->minmax(mag.data(), n, &lo0, &hi0);
    t->minmax(mag.data(), n, &lo1, &hi1);
    EXPECT(lo0 == lo1 && hi0 == hi1, "minmax differs (%s)", t->name);
    for (int bits : {1, 3, 8, 16}) {
      float step = float((double(hi0) - double(lo0)) / double((1u << bits) - 1));
      std::vector<uint16_t> c0(n), c1(n);
      ref->quantize(mag.data(), n, lo0, step, float((1u << bits) - 1), c0.data());
      t->quantize(mag.data(), n, lo0, step, float((1u << bits) - 1), c1.data());
      EXPECT(c0 == c1, "quantize differs (%s, %d bits)", t->name, bits);
      std::vector<float> d0(n), d1(n);
      ref->dequantize(c0.data(), n, lo0, step, d0.data());
      t->dequantize(c0.data(), n, lo0, step, d1.data());
      EXPECT(std::memcmp(d0.data(), d1.data(), n * 4) == 0, "dequantize differs (%s)", t->name);
    }
    std::vector<uint16_t> f0(n), f1(n);
    ref->to_f16(v.data(), n, f0.data());
    t->to_f16(v.data(), n, f1.data());
    EXPECT(f0 == f1, "to_f16 differs (%s)", t->name);
    ref->to_bf16(v.data(), n, f0.data());
    t->to_bf16(v.data(), n, f1.data());
    EXPECT(f0 == f1, "to_bf16 differs (%s)", t->name);
  }
  // f16 round trip of every finite half value is exact
  for (uint32_t u = 0; u < 0x10000u; ++u) {
    if ((u & 0x7c00u) == 0x7c00u) continue;
    EXPECT(collab::f32_to_f16(collab::f16_to_f32(uint16_t(u))) == u, "f16 round trip of %04x", u);
  }
}

void test_roundtrip_properties() {
  struct Case {
    std::vector<int64_t> shape;
    collab_codec_params p;
  };
  std::vector<Case> cases = {
      {{197, 384}, params(0.75, 3, 3, {8, 4, 2})}, {{1, 4096}, params(0.9)},
      {{7}, params(0.0, 2, 2, {16, 1})},          {{}, params(0.5)},
      {{0, 3}, params(0.5)},                       {{64, 33}, params(0.5, 4, 4, {8}, 0.3, 0.2, 77)},
      {{2, 3, 4, 5}, params(0.999, 64, 64, {3})},
  };
  for (const Case& c : cases) {
    size_t n = 1;
    for (auto d : c.shape) n *= size_t(d);
    for (collab_dtype dt : {COLLAB_DTYPE_F32, COLLAB_DTYPE_F16, COLLAB_DTYPE_BF16}) {
      std::vector<float> x = normal(n);
      std::vector<uint16_t> x16(n);
      for (size_t i = 0; i < n; ++i) {
        x16[i] = dt == COLLAB_DTYPE_F16 ? collab::f32_to_f16(x[i]) : collab::f32_to_bf16(x[i]);
        if (dt != COLLAB_DTYPE_F32) x[i] = dt == COLLAB_DTYPE_F16 ? collab::f16_to_f32(x16[i]) : collab::bf16_to_f32(x16[i]);
      }
      collab_tensor t = tensor(dt == COLLAB_DTYPE_F32 ? (void*)x.data() : (void*)x16.data(), dt, c.shape);
      collab_status st;
      std::vector<uint8_t> f = encode(t, c.p, &st);
      EXPECT(st == COLLAB_OK, "encode failed: %s", collab_last_error());
      uint64_t bound = 0;
      collab_codec_predict_bits(t.shape, t.ndim, &c.p, &bound);
      EXPECT(f.size() * 8 <= bound, "frame %zu bytes > bound %llu bits", f.size(), (unsigned long long)bound);
      collab_frame_info info;
      EXPECT(collab_frame_info_get(f.data(), f.size(), &info) == COLLAB_OK, "info: %s", collab_last_error());
      std::vector<uint8_t> y(n * (dt == COLLAB_DTYPE_F32 ? 4 : 2) + 1);
      collab_tensor o = tensor(y.data(), dt, c.shape);
      EXPECT(collab_codec_decode(nullptr, f.data(), f.size(), NULL, &o) == COLLAB_OK, "decode: %s", collab_last_error());
      size_t kept = 0;
      double max_rel = 0;
      for (size_t i = 0; i < n; ++i) {
        float yi;
        if (dt == COLLAB_DTYPE_F32) std::memcpy(&yi, &y[4 * i], 4);
        else {
          uint16_t u;
          std::memcpy(&u, &y[2 * i], 2);
          yi = dt == COLLAB_DTYPE_F16 ? collab::f16_to_f32(u) : collab::bf16_to_f32(u);
        }
        if (yi != 0.0f) {
          ++kept;
          EXPECT((yi > 0) == (x[i] > 0), "sign flipped at %zu", i);
        }
      }
      (void)max_rel;
      uint64_t nz = 0;
      for (float v : x) nz += v != 0.0f;
      uint64_t want = info.k_keep < nz ? info.k_keep : nz;
      EXPECT(kept == want, "kept %zu, expected %llu", kept, (unsigned long long)want);
    }
  }
}

void test_threads_deterministic() {
  std::vector<float> x = normal(300 * 768);
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {300, 768});
  std::vector<uint8_t> ref;
  for (int threads : {1, 2, 3, 8}) {
    collab_codec_params p = params(0.75, 2, 3, {8, 4, 2});
    p.n_threads = threads;
    std::vector<uint8_t> f = encode(t, p);
    if (ref.empty()) ref = f;
    EXPECT(f == ref, "frame differs with %d threads", threads);
  }
}

void test_concurrent_callers() {
  std::vector<float> x = normal(197 * 384);
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {197, 384});
  collab_codec_params p = params(0.6, 2, 2, {8, 4});
  p.n_threads = 2;
  std::vector<uint8_t> ref = encode(t, p);
  std::atomic<int> bad{0};
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i)
    th.emplace_back([&] {
      collab_codec* c = collab_codec_new();
      std::vector<uint8_t> out(ref.size() + 1024);
      std::vector<float> y(x.size());
      for (int r = 0; r < 20; ++r) {
        size_t n = 0;
        if (collab_codec_encode(c, &t, &p, out.data(), out.size(), &n) != COLLAB_OK || n != ref.size() ||
            std::memcmp(out.data(), ref.data(), n) != 0)
          ++bad;
        collab_tensor o = tensor(y.data(), COLLAB_DTYPE_F32, {197, 384});
        if (collab_codec_decode(c, ref.data(), ref.size(), NULL, &o) != COLLAB_OK) ++bad;
      }
      collab_codec_free(c);
    });
  for (auto& t2 : th) t2.join();
  EXPECT(bad == 0, "%d concurrent calls differed or failed", bad.load());
}

void test_error_codes() {
  std::vector<float> x = normal(64);
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {8, 8});
  collab_status st;
  x[5] = NAN;
  encode(t, params(0.5), &st);
  EXPECT(st == COLLAB_ERR_NONFINITE_INPUT, "NaN gave %d", st);
  x[5] = 1.0f;
  encode(t, params(1.0), &st);
  EXPECT(st == COLLAB_ERR_INVALID_ARGUMENT, "sparsity 1 gave %d", st);
  encode(t, params(0.5, 1, 1, {0}), &st);
  EXPECT(st == COLLAB_ERR_INVALID_ARGUMENT, "0 bits gave %d", st);
  encode(t, params(0.5, 0, 1), &st);
  EXPECT(st == COLLAB_ERR_INVALID_ARGUMENT, "0 blocks gave %d", st);
  const int bad_dtype = 9;  // what a C caller could pass
  std::memcpy(&t.dtype, &bad_dtype, sizeof bad_dtype);
  encode(t, params(0.5), &st);
  EXPECT(st == COLLAB_ERR_INVALID_ARGUMENT, "bad dtype gave %d", st);
  t.dtype = COLLAB_DTYPE_F32;
  EXPECT(std::strlen(collab_last_error()) > 0, "no error message");

  collab_codec_params p = params(0.5);
  size_t n = 0;
  std::vector<uint8_t> small(10);
  st = collab_codec_encode(nullptr, &t, &p, small.data(), small.size(), &n);
  EXPECT(st == COLLAB_ERR_BUFFER_TOO_SMALL && n > small.size(), "small buffer gave %d (n=%zu)", st, n);
  std::vector<uint8_t> exact(n);
  size_t n2 = 0;
  EXPECT(collab_codec_encode(nullptr, &t, &p, exact.data(), exact.size(), &n2) == COLLAB_OK && n2 == n,
         "exact-size buffer failed");

  std::vector<uint8_t> f = encode(t, p);
  std::vector<float> y(64);
  collab_tensor o = tensor(y.data(), COLLAB_DTYPE_F32, {8, 8});
  for (size_t cut = 0; cut < f.size(); ++cut)
    EXPECT(collab_codec_decode(nullptr, f.data(), cut, NULL, &o) == COLLAB_ERR_FRAME, "truncation at %zu accepted", cut);
  for (size_t i = 0; i < f.size(); ++i) {
    std::vector<uint8_t> g = f;
    g[i] ^= 0x04;
    EXPECT(collab_codec_decode(nullptr, g.data(), g.size(), NULL, &o) == COLLAB_ERR_FRAME, "bit flip at %zu accepted", i);
  }
  collab_tensor wrong = tensor(y.data(), COLLAB_DTYPE_F32, {4, 16});
  EXPECT(collab_codec_decode(nullptr, f.data(), f.size(), NULL, &wrong) == COLLAB_ERR_INVALID_ARGUMENT, "wrong shape accepted");
  EXPECT(collab_codec_decode(nullptr, nullptr, 0, NULL, &o) == COLLAB_ERR_FRAME, "NULL frame accepted");
  EXPECT(collab_simd_set("sse9") != COLLAB_OK, "unknown SIMD level accepted");
}

// A frame of x = {1, 2, 0, 0} whose shape varint is replaced by `numel` (checksum fixed):
// the index and values stay those of the 4-element frame.
std::vector<uint8_t> inflated_frame(int index_code, uint64_t numel) {
  std::vector<float> x = {1.0f, 2.0f, 0.0f, 0.0f};
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {4});
  collab_codec_params p = params(0.5);
  p.index_code = index_code;
  std::vector<uint8_t> f = encode(t, p);
  EXPECT(f[7] == 1 && f[8] == 4, "unexpected header layout");
  std::vector<uint8_t> g(f.begin(), f.begin() + 8);
  for (uint64_t v = numel; ; v >>= 7) {
    g.push_back(uint8_t((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
    if (v < 0x80) break;
  }
  g.insert(g.end(), f.begin() + 9, f.end() - 4);
  uint32_t crc = collab::crc32(g.data(), g.size());
  g.resize(g.size() + 4);
  std::memcpy(&g[g.size() - 4], &crc, 4);
  return g;
}

// Limits a decoder applies before touching memory: the output size limit, and the index
// section the header implies against the bytes actually received.
void test_decode_limits() {
  collab_codec_decode_params dp;
  collab_codec_decode_params_init(&dp);
  EXPECT(dp.max_output_bytes == COLLAB_DEFAULT_MAX_OUTPUT_BYTES, "default limit %llu",
         (unsigned long long)dp.max_output_bytes);

  // 2^28 float32 = 1 GiB from a few dozen bytes: refused before out is written. out points
  // at one float, so a write past the check would be caught by ASan.
  std::vector<uint8_t> big = inflated_frame(COLLAB_INDEX_DELTA_VARINT, uint64_t(1) << 28);
  collab_frame_info info;
  EXPECT(collab_frame_info_get(big.data(), big.size(), &info) == COLLAB_OK && info.numel == (uint64_t(1) << 28),
         "inflated varint frame should parse: %s", collab_last_error());
  float one = 42.0f;
  collab_tensor o = tensor(&one, COLLAB_DTYPE_F32, {int64_t(1) << 28});
  EXPECT(collab_codec_decode(nullptr, big.data(), big.size(), nullptr, &o) == COLLAB_ERR_FRAME, "1 GiB accepted");
  EXPECT(std::strstr(collab_last_error(), "max_output_bytes") != nullptr, "message: %s", collab_last_error());
  EXPECT(collab_codec_decode(nullptr, big.data(), big.size(), &dp, &o) == COLLAB_ERR_FRAME, "1 GiB accepted");
  EXPECT(one == 42.0f, "out was written");

  // CSR and bitmap sizes follow from the header: inflating the shape leaves them short.
  for (int code : {COLLAB_INDEX_CSR, COLLAB_INDEX_BITMAP, COLLAB_INDEX_DELTA_RICE}) {
    std::vector<uint8_t> g = inflated_frame(code, uint64_t(1) << 28);
    EXPECT(collab_frame_info_get(g.data(), g.size(), &info) == COLLAB_ERR_FRAME, "code %d: short index accepted",
           code);
    EXPECT(std::strstr(collab_last_error(), "index section") != nullptr, "code %d: %s", code, collab_last_error());
  }

  // The limit is inclusive: 8 x 8 float32 = 256 bytes.
  std::vector<float> x = normal(64), y(64);
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {8, 8}), out = tensor(y.data(), COLLAB_DTYPE_F32, {8, 8});
  std::vector<uint8_t> f = encode(t, params(0.5));
  dp.max_output_bytes = 255;
  EXPECT(collab_codec_decode(nullptr, f.data(), f.size(), &dp, &out) == COLLAB_ERR_FRAME, "255-byte limit");
  dp.max_output_bytes = 256;
  EXPECT(collab_codec_decode(nullptr, f.data(), f.size(), &dp, &out) == COLLAB_OK, "256-byte limit: %s",
         collab_last_error());

  // Shared argument checks: every NULL is named.
  size_t n = 0;
  EXPECT(collab_codec_encode_bound(t.shape, 2, nullptr, &n) == COLLAB_ERR_INVALID_ARGUMENT &&
             std::strcmp(collab_last_error(), "params is NULL") == 0,
         "NULL params: %s", collab_last_error());
  collab_codec_params p = params(0.5);
  EXPECT(collab_codec_encode(nullptr, &t, &p, nullptr, 100, &n) == COLLAB_ERR_INVALID_ARGUMENT, "NULL out accepted");
  EXPECT(collab_codec_decode(nullptr, f.data(), f.size(), nullptr, nullptr) == COLLAB_ERR_INVALID_ARGUMENT,
         "NULL out tensor accepted");
  EXPECT(collab_simd_set(nullptr) == COLLAB_ERR_INVALID_ARGUMENT, "NULL SIMD level accepted");
  collab_tensor bad = t;
  bad.device = 7;
  EXPECT(collab_codec_encode(nullptr, &bad, &p, nullptr, 0, &n) == COLLAB_ERR_INVALID_ARGUMENT, "device 7 accepted");
  bad = t;
  bad.ndim = COLLAB_MAX_NDIM + 1;
  EXPECT(collab_codec_encode(nullptr, &bad, &p, nullptr, 0, &n) == COLLAB_ERR_INVALID_ARGUMENT, "ndim 9 accepted");
}

// Mutate frames, fix the checksum, decode: any status is fine, crashes and sanitizer
// reports are not (this is what the fuzzer does at scale).
void test_hostile_frames() {
  std::vector<float> x = normal(20 * 12);
  collab_tensor t = tensor(x.data(), COLLAB_DTYPE_F32, {20, 12});
  std::vector<float> y(x.size());
  collab_tensor o = tensor(y.data(), COLLAB_DTYPE_F32, {20, 12});
  std::uniform_int_distribution<int> byte(0, 255);
  int accepted = 0, total = 0;
  for (int code = 0; code < 4; ++code) {
    collab_codec_params p = params(0.5, 2, 2, {8, 3});
    p.index_code = code;
    std::vector<uint8_t> f = encode(t, p);
    for (int r = 0; r < 2000; ++r) {
      std::vector<uint8_t> g = f;
      int muts = 1 + int(rng() % 3);
      for (int m = 0; m < muts; ++m) g[4 + rng() % (g.size() - 8)] = uint8_t(byte(rng));
      uint32_t crc = collab::crc32(g.data(), g.size() - 4);
      std::memcpy(&g[g.size() - 4], &crc, 4);
      collab_frame_info info;
      if (collab_frame_info_get(g.data(), g.size(), &info) != COLLAB_OK) continue;
      if (info.dtype != COLLAB_DTYPE_F32 || info.numel != x.size() || info.ndim != 2) continue;
      o.shape[0] = info.shape[0];
      o.shape[1] = info.shape[1];
      ++total;
      if (collab_codec_decode(nullptr, g.data(), g.size(), NULL, &o) == COLLAB_OK) ++accepted;
    }
  }
  std::printf("hostile frames: %d decoded of %d that parsed\n", accepted, total);
}

void test_crc32() {
  std::vector<uint8_t> buf(100000);
  for (auto& b : buf) b = uint8_t(rng());
  for (size_t len : {0, 1, 7, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 99999, 100000}) {
    for (size_t off : {0, 1, 3}) {
      if (off + len > buf.size()) continue;
      EXPECT(collab::crc32(buf.data() + off, len) == collab::crc32_portable(buf.data() + off, len),
             "crc32 hardware/portable differ (len %zu, offset %zu)", len, off);
    }
  }
  const char* check = "123456789";  // the CRC-32 check value
  EXPECT(collab::crc32(check, 9) == 0xCBF43926u, "crc32 check value");
  uint8_t zeros[200] = {};
  EXPECT(collab::crc32(zeros, 200) == collab::crc32_portable(zeros, 200), "crc32 of zeros");
}

// Golden frames written by tests/cpp/make_golden.py from the numpy reference.
void test_golden(const std::string& dir) {
  std::ifstream list(dir + "/index.txt");
  if (!list) {
    std::printf("golden frames: none at %s\n", dir.c_str());
    ++g_failures;
    return;
  }
  std::string name;
  int count = 0;
  while (list >> name) {
    std::ifstream f(dir + "/" + name, std::ios::binary);
    std::vector<uint8_t> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t p = 0;
    auto rd = [&](void* dst, size_t n) {
      if (p + n > buf.size()) throw std::runtime_error("short golden file");
      std::memcpy(dst, buf.data() + p, n);
      p += n;
    };
    uint32_t dtype, ndim, nq;
    rd(&dtype, 4);
    rd(&ndim, 4);
    std::vector<int64_t> shape(ndim);
    if (ndim) rd(shape.data(), 8 * ndim);
    collab_codec_params prm;
    collab_codec_params_init(&prm);
    rd(&prm.sparsity, 8);
    rd(&prm.lam, 8);
    rd(&prm.delta, 8);
    rd(&prm.seed, 8);
    rd(&prm.blocks_pos, 4);
    rd(&prm.blocks_neg, 4);
    rd(&nq, 4);
    prm.n_qbits = nq;
    rd(prm.qbits, nq);
    rd(&prm.index_code, 4);
    uint64_t nin, nframe;
    rd(&nin, 8);
    std::vector<uint8_t> input(nin);
    rd(input.data(), nin);
    rd(&nframe, 8);
    std::vector<uint8_t> expect(nframe);
    rd(expect.data(), nframe);
    collab_tensor t = tensor(input.data(), collab_dtype(dtype), shape);
    collab_status st;
    std::vector<uint8_t> got = encode(t, prm, &st);
    EXPECT(st == COLLAB_OK && got == expect, "golden %s: native frame differs from the reference (%zu vs %zu bytes)",
           name.c_str(), got.size(), expect.size());
    ++count;
  }
  std::printf("golden frames checked: %d\n", count);
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("collab %s, SIMD %s, threads %d\n", collab_version(), collab_simd_get(), collab_num_threads_get());
  test_kernels_agree();
  test_crc32();
  test_roundtrip_properties();
  test_threads_deterministic();
  test_concurrent_callers();
  test_error_codes();
  test_hostile_frames();
  test_decode_limits();
  if (argc > 1) test_golden(argv[1]);
  if (g_failures) {
    std::printf("%d failed, 0 passed\n", g_failures);
    return 1;
  }
  std::printf("all codec core tests passed\n");
  return 0;
}
