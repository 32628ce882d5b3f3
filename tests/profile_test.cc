// fq::profile: sections count only while enabled, report the slowest first, and reset.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fq/profile.h"

namespace fq {
namespace {

void sleep_in(const char* section, int milliseconds) {
  profile::Scope scope(section);
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
}

class Profile : public ::testing::Test {
 protected:
  void SetUp() override { profile::reset(); }
  void TearDown() override {
    profile::enable(false);
    profile::reset();
  }
};

TEST_F(Profile, DisabledScopesRecordNothing) {
  ASSERT_FALSE(profile::enabled());
  sleep_in("off", 1);
  EXPECT_TRUE(profile::report().empty());
}

TEST_F(Profile, SumsTimeAndCallsPerSectionSlowestFirst) {
  profile::enable(true);
  sleep_in("short", 2);
  sleep_in("long", 20);
  sleep_in("short", 2);
  profile::enable(false);
  sleep_in("short", 2);  // after disabling: not counted
  const auto sections = profile::report();
  ASSERT_EQ(sections.size(), 2u);
  EXPECT_EQ(sections[0].name, "long");
  EXPECT_EQ(sections[0].calls, 1);
  EXPECT_GE(sections[0].seconds, 0.020);
  EXPECT_EQ(sections[1].name, "short");
  EXPECT_EQ(sections[1].calls, 2);
  EXPECT_GE(sections[1].seconds, 0.004);
  EXPECT_LT(sections[1].seconds, sections[0].seconds);
}

TEST_F(Profile, AScopeCountsWhenProfilingWasOnAtItsStart) {
  profile::enable(true);
  {
    profile::Scope scope("started on");
    profile::enable(false);
  }
  {
    profile::Scope scope("started off");
    profile::enable(true);
  }
  const auto sections = profile::report();
  ASSERT_EQ(sections.size(), 1u);
  EXPECT_EQ(sections[0].name, "started on");
}

TEST_F(Profile, ResetForgetsEverything) {
  profile::enable(true);
  sleep_in("section", 1);
  ASSERT_EQ(profile::report().size(), 1u);
  profile::reset();
  EXPECT_TRUE(profile::report().empty());
}

}  // namespace
}  // namespace fq
