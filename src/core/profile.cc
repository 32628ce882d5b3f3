#include "fq/profile.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string_view>

namespace fq::profile {

namespace {
std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::map<std::string, Section, std::less<>>& registry() {
  static std::map<std::string, Section, std::less<>> sections;
  return sections;
}
}  // namespace

void detail::add(const char* section, double seconds) {
  std::lock_guard lock(registry_mutex());
  auto& sections = registry();
  auto it = sections.find(std::string_view(section));
  if (it == sections.end()) it = sections.emplace(section, Section{section, 0, 0}).first;
  it->second.seconds += seconds;
  ++it->second.calls;
}

void enable(bool on) { detail::enabled.store(on, std::memory_order_relaxed); }

std::vector<Section> report() {
  std::vector<Section> sections;
  {
    std::lock_guard lock(registry_mutex());
    for (const auto& [name, section] : registry()) sections.push_back(section);
  }
  std::stable_sort(sections.begin(), sections.end(),
                   [](const Section& a, const Section& b) { return a.seconds > b.seconds; });
  return sections;
}

void reset() {
  std::lock_guard lock(registry_mutex());
  registry().clear();
}

}  // namespace fq::profile
