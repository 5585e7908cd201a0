// A small fork-join pool for the core's data-parallel loops (std::thread only, so it works
// where OpenMP does not, e.g. Apple clang / iOS).
#pragma once

#include <cstddef>
#include <functional>

namespace collab {

// Threads the library uses by default (collab_set_num_threads / COLLAB_NUM_THREADS).
int default_num_threads();
void set_default_num_threads(int n);

// Run fn(task) for task in [0, n_tasks) on up to `threads` threads (the caller is one of
// them) and return when all are done. If another parallel_for is already using the pool
// (e.g. two user threads encoding at once), this one runs serially in the caller.
// Exceptions thrown by fn are rethrown in the caller (the first one wins).
void parallel_for(size_t n_tasks, int threads, const std::function<void(size_t)>& fn);

// Split [0, n) into at most `parts` contiguous chunks; chunk c is [chunk_begin(c), chunk_begin(c+1)).
struct Chunks {
  size_t n, parts;
  size_t begin(size_t c) const { return n / parts * c + (c < n % parts ? c : n % parts); }
  size_t end(size_t c) const { return begin(c + 1); }
};
inline Chunks make_chunks(size_t n, size_t parts, size_t min_chunk) {
  size_t p = min_chunk ? n / min_chunk : parts;
  if (p > parts) p = parts;
  if (p < 1) p = 1;
  return Chunks{n, p};
}

}  // namespace collab
