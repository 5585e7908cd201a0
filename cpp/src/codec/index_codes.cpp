#include "codec/index_codes.hpp"

#include <algorithm>

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

// Labels go to a numel-byte scratch (label + 1, 0 = empty) in one scatter per block; one
// sequential pass then emits the bitmap 64 positions at a time and the labels of set bits.
void encode_bitmap(const IndexContext& c, uint8_t* out, std::vector<uint8_t>& label) {
  const size_t numel = size_t(c.numel), nbm = (numel + 7) / 8;
  label.assign(numel, 0);
  uint64_t n = 0;
  for (size_t b = 0; b < c.blocks->size(); ++b) {
    const PositionSpan& s = (*c.blocks)[b];
    for (uint64_t j = 0; j < s.n; ++j) label[s.pos[j]] = uint8_t(b + 1);
    n += s.n;
  }
  const int wl = bit_length(c.blocks->size() - 1);
  uint8_t* lab = out + nbm;
  uint64_t acc = 0;
  int fill = 0;
  for (size_t base = 0; base < numel; base += 64) {
    const size_t m = numel - base < 64 ? numel - base : 64;
    const uint8_t* l = label.data() + base;
    uint64_t word = 0;
    if (m == 64) {
      // 8 labels at a time: the high bit of each byte says "non-zero", and one multiply
      // gathers the eight flags (at bits 0, 8, ..., 56) into one byte, in order.
      for (int k = 0; k < 8; ++k) {
        const uint64_t v = load_le64(l + 8 * k);
        const uint64_t nz = ((((v & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | v) >> 7) & 0x0101010101010101ull;
        word |= ((nz * 0x0102040810204080ull) >> 56) << (8 * k);
      }
    } else {
      for (size_t i = 0; i < m; ++i) word |= uint64_t(l[i] != 0) << i;
    }
    for (size_t i = 0; i < (m + 7) / 8; ++i) out[base / 8 + i] = uint8_t(word >> (8 * i));
    while (word) {
      const int t = __builtin_ctzll(word);
      word &= word - 1;
      acc |= uint64_t(l[t] - 1) << fill;
      fill += wl;
      if (fill >= 32) {
        for (int k = 0; k < 4; ++k) *lab++ = uint8_t(acc >> (8 * k));
        acc >>= 32;
        fill -= 32;
      }
    }
  }
  while (fill > 0) {
    *lab++ = uint8_t(acc);
    acc >>= 8;
    fill -= 8;
  }
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
    const uint64_t rem_mask = (uint64_t(1) << k) - 1;
    for (uint64_t j = 0; j < b.n; ++j) {
      const uint64_t g = gap_at(b.pos, j), q = g >> k;
      if (q + 1 + uint64_t(k) <= 32) {  // whole code in one write: q zeros, a one, k bits
        w.put((uint64_t(1) << q) | ((g & rem_mask) << (q + 1)), int(q + 1) + k);
      } else {
        w.zeros(q);
        w.put(1 | ((g & rem_mask) << 1), k + 1);
      }
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
  const size_t nb = counts.size();
  uint64_t cursor[2 * COLLAB_MAX_BLOCKS], end[2 * COLLAB_MAX_BLOCKS];
  uint64_t off = 0;
  for (size_t b = 0; b < nb; ++b) {
    cursor[b] = off;
    off += counts[b];
    end[b] = off;
  }
  const uint8_t* lab = in + nbm;
  const size_t nlab = len - nbm;
  const uint64_t mask = (uint64_t(1) << wl) - 1;
  uint64_t seen = 0;
  for (size_t byte = 0; byte < nbm; byte += 8) {
    uint64_t word = 0;
    if (byte + 8 <= nbm) {
      word = load_le64(in + byte);
    } else {
      for (size_t k = 0; byte + k < nbm; ++k) word |= uint64_t(in[byte + k]) << (8 * k);
    }
    if (!word) continue;
    COLLAB_FRAME_CHECK(uint64_t(__builtin_popcountll(word)) <= n - seen,
                       "bitmap population does not match block counts");
    while (word) {
      const int t = __builtin_ctzll(word);
      word &= word - 1;
      const uint64_t bit = seen * uint64_t(wl);
      const size_t at = size_t(bit >> 3);
      uint64_t window;  // labels are <= 7 bits: two bytes cover any bit offset
      if (at + 8 <= nlab) {
        window = load_le64(lab + at);
      } else {
        window = lab[at];
        if (at + 1 < nlab) window |= uint64_t(lab[at + 1]) << 8;
      }
      const uint64_t label = (window >> (bit & 7)) & mask;
      COLLAB_FRAME_CHECK(label < nb && cursor[label] < end[label], "bitmap labels do not match block counts");
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

IndexChoice choose_index_code(const IndexContext& c, int requested) {
  const uint64_t csr = csr_size(c), bm = bitmap_size(c);  // O(blocks): no pass over positions
  if (requested == COLLAB_INDEX_CSR || requested == COLLAB_INDEX_BITMAP)
    return {requested, requested == COLLAB_INDEX_CSR ? csr : bm};
  if (requested >= 0) return {requested, index_sizes(c)[size_t(requested)]};
  IndexChoice best = csr <= bm ? IndexChoice{0, csr} : IndexChoice{1, bm};
  // Rice: exact without a pass for blocks with k = 0, where the gaps of a block sum to
  // pos_last - (n - 1) (telescoping); otherwise n (k + 1) bits is a lower bound.
  uint64_t n_total = 0, rice = 0, rice_floor = 0;
  bool rice_needs_pass = false;
  for (const PositionSpan& b : *c.blocks) {
    if (!b.n) continue;
    n_total += b.n;
    const int k = rice_parameter(c.numel, b.n);
    if (k == 0) {
      const uint64_t bytes = (b.pos[b.n - 1] + 1 + 7) / 8;  // n + sum(g) bits = pos_last + 1
      rice += bytes;
      rice_floor += bytes;
    } else {
      rice_needs_pass = true;
      rice_floor += (b.n * uint64_t(k + 1) + 7) / 8;
    }
  }
  // delta+varint needs at least one byte per position, and loses ties to every code but Rice.
  const bool dvar_may_win = n_total < best.bytes && n_total <= (rice_needs_pass ? ~uint64_t(0) : rice);
  const bool rice_may_win = rice_floor < best.bytes;
  if (!dvar_may_win && !(rice_may_win && rice_needs_pass)) {
    if (rice_may_win && rice < best.bytes) best = {3, rice};  // rice is exact here
    return best;
  }
  const std::array<uint64_t, 4> sizes = index_sizes(c);  // rare: exact sizes decide
  const int code = int(std::min_element(sizes.begin(), sizes.end()) - sizes.begin());
  return {code, sizes[size_t(code)]};
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
