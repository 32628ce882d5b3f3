// The run-time choice of autotune.h: the fastest candidate wins and is remembered per key, failing candidates
// are left out, and with tuning off the first candidate runs untimed. The candidates here wait on the host, so
// the timings are the same on the emulator and on a GPU.
#include <chrono>
#include <thread>

#include "backends/cuda/autotune.h"
#include "cuda/cuda_test_util.h"
#include "fq/error.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Autotune);

namespace {

// Sets the tuning mode for one test and restores the previous one.
class TuningFor {
 public:
  explicit TuningFor(dev::Tuning mode) : previous_(dev::tuning()) { dev::set_tuning(mode); }
  ~TuningFor() { dev::set_tuning(previous_); }

 private:
  dev::Tuning previous_;
};

std::string unique_key(const char* what) { return std::string(what) + " " + std::to_string(dev::testing::fresh_seed()); }

}  // namespace

FQ_CUDA_TEST(Autotune, ChoosesTheFastestCandidateOnceAndRemembersIt) {
  const TuningFor on(dev::Tuning::on);
  const std::string names[] = {"slow", "fast", "middling"};
  const int delays_us[] = {3000, 300, 1500};
  std::vector<int> runs(3, 0);
  auto run = [&](size_t i) {
    ++runs[i];
    std::this_thread::sleep_for(std::chrono::microseconds(delays_us[i]));
  };
  const std::string key = unique_key("three sleepers");
  const size_t timed_before = dev::tuned_choices();
  EXPECT_EQ(dev::fastest(key, names, run), 1u);
  EXPECT_EQ(dev::tuned_choices(), timed_before + 1);
  for (int count : runs) EXPECT_GE(count, 2);  // an untimed run and at least one timed run each
  const std::vector<int> after_tuning = runs;
  EXPECT_EQ(dev::fastest(key, names, run), 1u);
  EXPECT_EQ(runs, after_tuning) << "a remembered choice must not run the candidates again";
  EXPECT_EQ(dev::tuned_choices(), timed_before + 1);
}

FQ_CUDA_TEST(Autotune, FailingCandidatesAreLeftOutAndAllFailingIsAnError) {
  const TuningFor on(dev::Tuning::on);
  const std::string names[] = {"throws", "works"};
  EXPECT_EQ(dev::fastest(unique_key("one fails"), names,
                         [](size_t i) {
                           if (i == 0) fq::fail("candidate 0 cannot take this shape");
                         }),
            1u);
  try {
    dev::fastest(unique_key("both fail"), names, [](size_t i) { fq::fail("candidate {} failed", i); });
    FAIL() << "expected fq::Error";
  } catch (const fq::Error& error) {
    EXPECT_STREQ(error.what(), "candidate 0 failed");
  }
}

FQ_CUDA_TEST(Autotune, OffRunsNothingAndTakesTheFirst) {
  const TuningFor off(dev::Tuning::off);
  const std::string names[] = {"first", "second"};
  int runs = 0;
  EXPECT_EQ(dev::fastest(unique_key("off"), names, [&](size_t) { ++runs; }), 0u);
  EXPECT_EQ(runs, 0);
}
