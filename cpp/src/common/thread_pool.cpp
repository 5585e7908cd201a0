#include "common/thread_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace collab {

namespace {

int env_threads() {
  const char* s = std::getenv("COLLAB_NUM_THREADS");
  if (s && *s) {
    int v = std::atoi(s);
    if (v > 0) return v;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? int(hw) : 1;
}

std::atomic<int> g_threads{0};

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  bool try_acquire() { return !busy_.exchange(true); }
  void release() { busy_.store(false); }

  // Only called by the holder of busy_.
  void run(size_t n_tasks, int threads, const std::function<void(size_t)>& fn) {
    ensure_workers(threads - 1);
    std::unique_lock<std::mutex> lk(mu_);
    fn_ = &fn;
    n_tasks_ = n_tasks;
    next_.store(0);
    active_ = threads - 1;
    requested_ = threads - 1;
    error_ = nullptr;
    ++generation_;
    lk.unlock();
    cv_.notify_all();
    work();
    lk.lock();
    done_cv_.wait(lk, [&] { return active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void ensure_workers(int n) {
    std::lock_guard<std::mutex> lk(mu_);
    while (int(workers_.size()) < n) {
      size_t id = workers_.size();
      workers_.emplace_back([this, id] { loop(id); });
    }
  }

  void work() {
    for (;;) {
      size_t t = next_.fetch_add(1);
      if (t >= n_tasks_) return;
      try {
        (*fn_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_tasks_);  // stop handing out tasks
      }
    }
  }

  void loop(size_t id) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      // Workers beyond this job's thread count sit it out.
      if (id >= size_t(requested_)) continue;
      lk.unlock();
      work();
      lk.lock();
      if (--active_ == 0) done_cv_.notify_one();
    }
  }
  std::vector<std::thread> workers_;
  std::mutex mu_, err_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_tasks_ = 0;
  std::atomic<size_t> next_{0};
  int active_ = 0;
  int requested_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::atomic<bool> busy_{false};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int default_num_threads() {
  int t = g_threads.load();
  if (t <= 0) {
    t = env_threads();
    g_threads.store(t);
  }
  return t;
}

void set_default_num_threads(int n) { g_threads.store(n > 0 ? n : env_threads()); }

void parallel_for(size_t n_tasks, int threads, const std::function<void(size_t)>& fn) {
  if (threads <= 0) threads = default_num_threads();
  if (size_t(threads) > n_tasks) threads = int(n_tasks);
  Pool& p = pool();
  if (threads <= 1 || !p.try_acquire()) {
    for (size_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  struct Release {
    Pool& p;
    ~Release() { p.release(); }
  } release{p};
  p.run(n_tasks, threads, fn);
}

}  // namespace collab
