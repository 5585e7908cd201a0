#include "codec/index_codes.hpp"

#include <cstring>

#include "common/bits.hpp"
#include "common/byte_io.hpp"

namespace collab {

namespace {

// Gap before position j: p_0, then p_j - p_{j-1} - 1.
inline uint64_t gap_at(const uint32_t* pos, uint64_t j) { return j ? uint64_t(pos[j] - pos[j - 1] - 1) : pos[0]; }

uint64_t csr_size(const IndexContext& c) {
  const int wc = csr_col_bits(c.csr);
  uint64_t total = 0;
  for (const PositionSpan& b : *c.blocks) {
    if (!b.n) continue;
    total += packed_bytes(c.csr.rows + 1, bit_length(b.n)) + packed_bytes(b.n, wc);
  }
  return total;
}

uint64_t bitmap_size(const IndexContext& c) {
  uint64_t n = 0;
  for (const PositionSpan& b : *c.blocks) n += b.n;
  return (c.numel + 7) / 8 + packed_bytes(n, bit_length(c.blocks->size() - 1));
}

void encode_csr(const IndexContext& c, uint8_t* out) {
  const int wc = csr_col_bits(c.csr);
  std::vector<uint32_t> row_ptr(size_t(c.csr.rows + 1)), cols;
  for (const PositionSpan& b : *c.blocks) {
    if (!b.n) continue;
    cols.resize(size_t(b.n));
    uint64_t row = 0;
    row_ptr[0] = 0;
    for (uint64_t j = 0; j < b.n; ++j) {
      uint64_t r = b.pos[j] / c.csr.cols;
      while (row < r) row_ptr[size_t(++row)] = uint32_t(j);
      cols[size_t(j)] = uint32_t(b.pos[j] - r * c.csr.cols);
    }
    while (row < c.csr.rows) row_ptr[size_t(++row)] = uint32_t(b.n);
    const int wr = bit_length(b.n);
    pack_bits(row_ptr.data(), row_ptr.size(), wr, out);
    out += packed_bytes(row_ptr.size(), wr);
    pack_bits(cols.data(), cols.size(), wc, out);
    out += packed_bytes(cols.size(), wc);
  }
}

void encode_bitmap(const IndexContext& c, uint8_t* out, std::vector<uint8_t>& label) {
  const size_t nbm = size_t((c.numel + 7) / 8);
  std::memset(out, 0, nbm);
  label.resize(size_t(c.numel));
  uint64_t n = 0;
  for (size_t b = 0; b < c.blocks->size(); ++b) {
    const PositionSpan& s = (*c.blocks)[b];
    for (uint64_t j = 0; j < s.n; ++j) {
      uint32_t p = s.pos[j];
      out[p >> 3] |= uint8_t(1u << (p & 7));
      label[p] = uint8_t(b);
    }
    n += s.n;
  }
  const int wl = bit_length(c.blocks->size() - 1);
  uint8_t* lab = out + nbm;
  std::memset(lab, 0, packed_bytes(n, wl));
  uint64_t acc = 0;
  int fill = 0;
  for (size_t byte = 0; byte < nbm; ++byte) {
    uint32_t bits = out[byte];
    while (bits) {
      int t = __builtin_ctz(bits);
      bits &= bits - 1;
      acc |= uint64_t(label[byte * 8 + size_t(t)]) << fill;
      fill += wl;
      while (fill >= 8) {
        *lab++ = uint8_t(acc);
        acc >>= 8;
        fill -= 8;
      }
    }
  }
  if (fill) *lab = uint8_t(acc);
}

uint8_t* put_varint(uint8_t* out, uint64_t v) {
  while (v >= 0x80) {
    *out++ = uint8_t(v | 0x80);
    v >>= 7;
  }
  *out++ = uint8_t(v);
  return out;
}

void encode_delta_varint(const IndexContext& c, uint8_t* out) {
  for (const PositionSpan& b : *c.blocks)
    for (uint64_t j = 0; j < b.n; ++j) out = put_varint(out, gap_at(b.pos, j));
}

void encode_delta_rice(const IndexContext& c, uint8_t* out) {
  for (const PositionSpan& b : *c.blocks) {
    if (!b.n) continue;
    const int k = rice_parameter(c.numel, b.n);
    BitWriter w(out);
    for (uint64_t j = 0; j < b.n; ++j) {
      uint64_t g = gap_at(b.pos, j);
      w.zeros(g >> k);
      w.put(1, 1);
      w.put(g & ((uint64_t(1) << k) - 1), k);
    }
    out += w.finish();
  }
}

// ---- decoders --------------------------------------------------------------------------

void decode_csr(const uint8_t* in, size_t len, const CsrView& csr, const std::vector<uint64_t>& counts,
                uint32_t* positions) {
  const int wc = csr_col_bits(csr);
  size_t p = 0;
  std::vector<uint32_t> row_ptr, cols;
  for (uint64_t n : counts) {
    if (!n) continue;
    const int wr = bit_length(n);
    size_t nr = packed_bytes(csr.rows + 1, wr), nc = packed_bytes(n, wc);
    // Check sizes before allocating: a hostile header cannot make us allocate more than
    // a small multiple of the bytes actually received.
    COLLAB_FRAME_CHECK(nr <= len - p && nc <= len - p - nr, "truncated CSR section");
    row_ptr.resize(size_t(csr.rows + 1));
    unpack_bits(in + p, nr, row_ptr.size(), wr, row_ptr.data());
    p += nr;
    cols.resize(size_t(n));
    unpack_bits(in + p, nc, cols.size(), wc, cols.data());
    p += nc;
    COLLAB_FRAME_CHECK(row_ptr[0] == 0 && row_ptr.back() == n, "bad CSR row pointers");
    uint64_t j = 0;
    for (uint64_t row = 0; row < csr.rows; ++row) {
      uint64_t end = row_ptr[size_t(row + 1)];
      COLLAB_FRAME_CHECK(end >= j && end <= n, "bad CSR row pointers");
      int64_t prev = -1;
      for (; j < end; ++j) {
        uint64_t col = cols[size_t(j)];
        COLLAB_FRAME_CHECK(col < csr.cols && int64_t(col) > prev, "bad CSR column index");
        prev = int64_t(col);
        positions[j] = uint32_t(row * csr.cols + col);
      }
    }
    positions += n;
  }
  COLLAB_FRAME_CHECK(p == len, "CSR section has trailing bytes");
}

void decode_bitmap(const uint8_t* in, size_t len, uint64_t numel, const std::vector<uint64_t>& counts,
                   uint32_t* positions) {
  const size_t nbm = size_t((numel + 7) / 8);
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  const int wl = bit_length(counts.size() - 1);
  COLLAB_FRAME_CHECK(len == nbm + packed_bytes(n, wl), "bitmap section has the wrong size");
  if (numel % 8) COLLAB_FRAME_CHECK((in[nbm - 1] >> (numel % 8)) == 0, "bitmap padding is not zero");
  std::vector<uint64_t> cursor(counts.size()), end(counts.size());
  uint64_t off = 0;
  for (size_t b = 0; b < counts.size(); ++b) {
    cursor[b] = off;
    off += counts[b];
    end[b] = off;
  }
  const uint8_t* lab = in + nbm;
  const size_t nlab = len - nbm;
  const uint64_t mask = (uint64_t(1) << wl) - 1;
  uint64_t seen = 0;
  for (size_t byte = 0; byte < nbm; ++byte) {
    uint32_t bits = in[byte];
    while (bits) {
      int t = __builtin_ctz(bits);
      bits &= bits - 1;
      COLLAB_FRAME_CHECK(seen < n, "bitmap population does not match block counts");
      uint64_t bit = seen * uint64_t(wl);
      uint64_t word = 0;
      for (int k = 0; k < 2 && (bit >> 3) + size_t(k) < nlab; ++k) word |= uint64_t(lab[(bit >> 3) + size_t(k)]) << (8 * k);
      uint64_t label = (word >> (bit & 7)) & mask;
      COLLAB_FRAME_CHECK(label < counts.size() && cursor[label] < end[label], "bitmap labels do not match block counts");
      positions[cursor[label]++] = uint32_t(byte * 8 + size_t(t));
      ++seen;
    }
  }
  COLLAB_FRAME_CHECK(seen == n, "bitmap population does not match block counts");
}

void decode_delta_varint(const uint8_t* in, size_t len, uint64_t numel, const std::vector<uint64_t>& counts,
                         uint32_t* positions) {
  ByteReader r(in, len);
  for (uint64_t n : counts) {
    uint64_t next = 0;  // smallest position the next element may take
    for (uint64_t j = 0; j < n; ++j) {
      uint64_t g = r.varint();
      COLLAB_FRAME_CHECK(g < numel && next + g < numel, "position out of range");
      uint64_t p = next + g;
      positions[j] = uint32_t(p);
      next = p + 1;
    }
    positions += n;
  }
  COLLAB_FRAME_CHECK(r.remaining() == 0, "varint section has trailing bytes");
}

void decode_delta_rice(const uint8_t* in, size_t len, uint64_t numel, const std::vector<uint64_t>& counts,
                       uint32_t* positions) {
  size_t p = 0;
  for (uint64_t n : counts) {
    if (!n) continue;
    const int k = rice_parameter(numel, n);
    BitReader r(in + p, len - p);
    uint64_t next = 0;
    for (uint64_t j = 0; j < n; ++j) {
      uint64_t q = r.unary(numel);
      uint64_t g = (q << k) | r.bits(k);
      COLLAB_FRAME_CHECK(g < numel && next + g < numel, "position out of range");
      uint64_t pos = next + g;
      positions[j] = uint32_t(pos);
      next = pos + 1;
    }
    positions += n;
    p += r.bytes_consumed();
  }
  COLLAB_FRAME_CHECK(p == len, "rice section has trailing bytes");
}

}  // namespace

std::array<uint64_t, 4> index_sizes(const IndexContext& c) {
  uint64_t dvar = 0, rice = 0;
  for (const PositionSpan& b : *c.blocks) {
    if (!b.n) continue;
    const int k = rice_parameter(c.numel, b.n);
    uint64_t rice_bits = b.n * uint64_t(k + 1);
    for (uint64_t j = 0; j < b.n; ++j) {
      uint64_t g = gap_at(b.pos, j);
      dvar += varint_size(g);
      rice_bits += g >> k;
    }
    rice += (rice_bits + 7) / 8;
  }
  return {csr_size(c), bitmap_size(c), dvar, rice};
}

void encode_index(const IndexContext& ctx, int code, uint8_t* out, std::vector<uint8_t>& label_scratch) {
  switch (code) {
    case COLLAB_INDEX_CSR: encode_csr(ctx, out); break;
    case COLLAB_INDEX_BITMAP: encode_bitmap(ctx, out, label_scratch); break;
    case COLLAB_INDEX_DELTA_VARINT: encode_delta_varint(ctx, out); break;
    default: encode_delta_rice(ctx, out); break;
  }
}

void decode_index(int code, const uint8_t* in, size_t len, uint64_t numel, const CsrView& csr,
                  const std::vector<uint64_t>& counts, uint32_t* positions) {
  switch (code) {
    case COLLAB_INDEX_CSR: decode_csr(in, len, csr, counts, positions); break;
    case COLLAB_INDEX_BITMAP: decode_bitmap(in, len, numel, counts, positions); break;
    case COLLAB_INDEX_DELTA_VARINT: decode_delta_varint(in, len, numel, counts, positions); break;
    default: decode_delta_rice(in, len, numel, counts, positions); break;
  }
}

}  // namespace collab
