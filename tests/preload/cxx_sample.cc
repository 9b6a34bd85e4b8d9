// A C++ program for the smpalloc LD_PRELOAD tests: heavy use of std::string, std::vector,
// std::map, std::unordered_map and std::thread, so operator new/delete (and the malloc under
// them) are exercised from several threads, including objects made in one thread and
// destroyed in another. Output is deterministic: per-thread results are printed in thread
// order and the hand-off results are combined order-independently.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::uint64_t fnv1a(const std::string &s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

struct Lcg {
  std::uint64_t s;
  explicit Lcg(std::uint64_t seed) : s(seed) {}
  std::uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(s >> 33);
  }
};

struct Result {
  std::size_t words = 0, distinct = 0, longest = 0;
  std::uint64_t hash = 0;
  std::string top;
};

// Each worker builds strings, counts them in a map and an unordered_map, sorts a vector of
// records and keeps a digest; everything it allocates is freed before it returns.
Result worker(int id) {
  static const char *const syl[] = {"an", "be", "co", "di", "el", "fu", "ga", "hi",
                                    "io", "ju", "ka", "lu", "mo", "ne", "ox", "pi"};
  Lcg rng(1000003u * static_cast<unsigned>(id + 1));
  std::map<std::string, int> counts;
  std::unordered_map<std::string, std::vector<int>> where;
  std::vector<std::string> words;
  for (int i = 0; i < 60000; i++) {
    std::string w;
    int len = 1 + static_cast<int>(rng.next() % 4);
    for (int k = 0; k < len; k++) w += syl[rng.next() % 16];
    if (rng.next() % 7 == 0) w += std::to_string(i % 100);
    ++counts[w];
    where[w].push_back(i);
    words.push_back(std::move(w));
  }
  std::vector<std::pair<int, std::string>> ranked;
  ranked.reserve(counts.size());
  for (const auto &kv : counts) ranked.emplace_back(-kv.second, kv.first);
  std::sort(ranked.begin(), ranked.end());
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());

  Result r;
  r.words = 60000;
  r.distinct = words.size();
  for (const auto &w : words) r.longest = std::max(r.longest, w.size());
  std::ostringstream top;
  for (std::size_t i = 0; i < 3 && i < ranked.size(); i++)
    top << ranked[i].second << "=" << -ranked[i].first << (i < 2 ? "," : "");
  r.top = top.str();
  std::uint64_t h = 0;
  for (const auto &kv : counts) {
    const auto &pos = where.at(kv.first);
    h = fnv1a(kv.first + ":" + std::to_string(kv.second) + "@" + std::to_string(pos.front()), h);
  }
  r.hash = h;
  return r;
}

// Hand-off: producers allocate strings and vectors, consumers destroy them.
struct Message {
  int producer;
  int seq;
  std::string text;
  std::vector<std::uint32_t> payload;
};

class Channel {
 public:
  void push(std::unique_ptr<Message> m) {
    std::unique_lock<std::mutex> lk(mu_);
    not_full_.wait(lk, [&] { return q_.size() < 512; });
    q_.push_back(std::move(m));
    not_empty_.notify_one();
  }
  std::unique_ptr<Message> pop() {
    std::unique_lock<std::mutex> lk(mu_);
    not_empty_.wait(lk, [&] { return !q_.empty(); });
    auto m = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return m;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<std::unique_ptr<Message>> q_;
};

}  // namespace

int main() {
  const int kWorkers = 8;
  std::vector<Result> results(kWorkers);
  for (int round = 0; round < 3; round++) {
    std::vector<std::thread> threads;
    for (int i = 0; i < kWorkers; i++)
      threads.emplace_back([&results, i, round] { results[i] = worker(i + round * kWorkers); });
    for (auto &t : threads) t.join();
    for (int i = 0; i < kWorkers; i++) {
      const Result &r = results[i];
      std::cout << "round " << round << " worker " << std::setw(2) << i << ": words "
                << r.words << " distinct " << r.distinct << " longest " << r.longest
                << " hash " << std::hex << std::setw(16) << std::setfill('0') << r.hash
                << std::dec << std::setfill(' ') << " top " << r.top << "\n";
    }
  }

  const int kProducers = 4, kPerProducer = 40000;
  Channel ch;
  std::mutex total_mu;
  std::uint64_t total_items = 0, total_bytes = 0, total_check = 0;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; p++)
    threads.emplace_back([&ch, p] {
      Lcg rng(77u + static_cast<unsigned>(p));
      for (int s = 0; s < kPerProducer; s++) {
        auto m = std::make_unique<Message>();
        m->producer = p;
        m->seq = s;
        m->text.assign(8 + rng.next() % 200, static_cast<char>('a' + (s + p) % 26));
        m->payload.resize(rng.next() % 300, static_cast<std::uint32_t>(s));
        ch.push(std::move(m));
      }
      ch.push(nullptr);  // end marker; consumers count them
    });
  for (int c = 0; c < kProducers; c++)
    threads.emplace_back([&] {
      std::uint64_t items = 0, bytes = 0, check = 0;
      for (;;) {
        auto m = ch.pop();
        if (!m) break;
        items++;
        bytes += m->text.size() + m->payload.size() * sizeof(std::uint32_t);
        check += static_cast<std::uint64_t>(m->producer) * 1000003u + m->seq +
                 std::accumulate(m->payload.begin(), m->payload.end(), std::uint64_t{0}) +
                 fnv1a(m->text);
      }  // each message is destroyed by the consumer, not the producer that made it
      std::lock_guard<std::mutex> lk(total_mu);
      total_items += items;
      total_bytes += bytes;
      total_check += check;
    });
  for (auto &t : threads) t.join();
  std::cout << "hand-off: items " << total_items << " bytes " << total_bytes << " check "
            << total_check << "\n";
  return 0;
}
