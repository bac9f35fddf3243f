// A stand-in for libFuzzer's driver, since the build uses gcc: replays every
// seed file given on the command line (files or directories), then runs
// random mutations of them until a time budget (FUZZ_SECONDS, default 5)
// or iteration count (FUZZ_RUNS) is spent. A crash or abort fails the test.
// With clang, link the same target with -fsanitize=fuzzer instead.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                         input.size());
}

// Mutations that matter to a CSV parser: structural bytes, bit flips,
// truncation, duplication and splicing of seeds.
std::string Mutate(const std::vector<std::string>& seeds,
                   std::mt19937_64& rng) {
  static const char kInteresting[] = {',',    ';',    '"',    '\r',   '\n',
                                      '|',    '{',    '}',    '\xEF', '\xBB',
                                      '\xBF', '\xC3', '\xFF', '\0',   ' '};
  std::string s = seeds[rng() % seeds.size()];
  const int steps = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < steps; ++i) {
    const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:
        s.insert(pos, 1, kInteresting[rng() % sizeof(kInteresting)]);
        break;
      case 1:
        if (!s.empty())
          s[pos % s.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 2:
        if (!s.empty()) s.erase(pos % s.size(), 1 + rng() % 16);
        break;
      case 3:
        if (!s.empty()) {
          const size_t from = rng() % s.size();
          s.insert(pos, s.substr(from, 1 + rng() % 64));
        }
        break;
      case 4: {
        const std::string& other = seeds[rng() % seeds.size()];
        s = s.substr(0, pos) +
            other.substr(other.empty() ? 0 : rng() % other.size());
        break;
      }
      case 5:
        s.resize(pos);
        break;
    }
  }
  if (s.size() > 8192) s.resize(8192);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (e.is_regular_file()) seeds.push_back(ReadFile(e.path()));
      }
    } else {
      seeds.push_back(ReadFile(p));
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "no seeds given\n");
    return 1;
  }
  for (const std::string& seed : seeds) {
    // Each seed with several chunkings (the first byte picks the chunk size).
    for (char c : {'\0', '\x03', '\x3f'}) Run(std::string(1, c) + seed);
  }
  const char* secs_env = std::getenv("FUZZ_SECONDS");
  const char* runs_env = std::getenv("FUZZ_RUNS");
  const double seconds = secs_env ? std::atof(secs_env) : 5.0;
  const long max_runs = runs_env ? std::atol(runs_env) : -1;
  const char* seed_env = std::getenv("FUZZ_SEED");
  std::mt19937_64 rng(seed_env ? std::strtoull(seed_env, nullptr, 10)
                               : std::random_device{}());
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long runs = 0;
  while ((max_runs < 0 || runs < max_runs) &&
         std::chrono::steady_clock::now() < deadline) {
    Run(Mutate(seeds, rng));
    ++runs;
  }
  std::printf("%zu seeds, %ld mutations, no crash\n", seeds.size(), runs);
  return 0;
}
