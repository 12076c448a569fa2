#pragma once
// Shared validators for numeric command-line flags, so every command refuses a bad value the
// same way: "--max-tokens: must be an integer between 1 and 1125899906842624, got 0". CLI11
// runs validators on the raw text before conversion, so overflowing or empty values ("1,,2")
// are caught here instead of turning into a wrapped number later.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace samba::cli {

// The largest token or step count a flag accepts (matches the recipe's max_tokens cap).
constexpr int64_t kMaxFlagCount = int64_t{1} << 50;
// The largest multiple of the training length an evaluation context may be (keeps
// multiple x seq_len far from overflow).
constexpr int64_t kMaxContextMultiple = 1024;

// An integer in [min_value, max_value]; with a delimiter the check runs on each item.
inline CLI::Validator int_in_range(int64_t min_value, int64_t max_value) {
  const std::string range = "an integer between " + std::to_string(min_value) + " and " + std::to_string(max_value);
  return CLI::Validator(
      [min_value, max_value, range](std::string& text) -> std::string {
        if (text.empty()) return "must be " + range + ", got an empty value (a doubled ',' in a list?)";
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(text, &used, 10);
        } catch (const std::out_of_range&) {
          return "must be " + range + ", got " + text + " (does not fit a 64-bit integer)";
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size()) return "must be " + range + ", got '" + text + "'";
        if (v < min_value || v > max_value) return "must be " + range + ", got " + text;
        return "";
      },
      "INT in [" + std::to_string(min_value) + ", " + std::to_string(max_value) + "]");
}

// A comma-separated list of integers in [min_value, max_value] ("1,2,4"). CLI11's own
// delimiter splitting silently drops empty items ("1,,2" would become 1,2), so the list is
// taken as one string, checked item by item, and then stored in `out`.
inline CLI::Option* add_int_list_option(CLI::App* cmd, const std::string& name, std::vector<int64_t>& out,
                                        int64_t min_value, int64_t max_value, const std::string& help) {
  const CLI::Validator item = int_in_range(min_value, max_value);
  auto check_list = [item](std::string& text) -> std::string {
    size_t start = 0, index = 1;
    while (true) {
      const size_t comma = text.find(',', start);
      std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const std::string err = item(part);
      if (!err.empty()) return "item " + std::to_string(index) + " of '" + text + "' " + err;
      if (comma == std::string::npos) return "";
      start = comma + 1;
      ++index;
    }
  };
  auto store = [&out](const std::string& text) {
    out.clear();
    for (size_t start = 0;;) {
      const size_t comma = text.find(',', start);
      out.push_back(std::stoll(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  };
  return cmd->add_option_function<std::string>(name, store, help)
      ->check(CLI::Validator(check_list, "INT,INT,..."));
}

}  // namespace samba::cli
