// The shared numeric flag validators (include/samba/cli/flags.h): ranges, overflow and empty
// list items are refused with the flag's name, valid values parse.
#include <gtest/gtest.h>

#include "samba/cli/flags.h"

namespace {

struct Parsed {
  std::string error;  // "" when parsing succeeded
  std::vector<int64_t> lengths{1, 2, 4};
  int64_t steps = 0;
};

Parsed parse(std::vector<std::string> args) {
  CLI::App app{"t"};
  Parsed p;
  samba::cli::add_int_list_option(&app, "--lengths", p.lengths, 1, samba::cli::kMaxContextMultiple, "multiples");
  app.add_option("--steps", p.steps)->check(samba::cli::int_in_range(0, samba::cli::kMaxFlagCount));
  std::vector<const char*> argv = {"t"};
  for (auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    p.error = e.what();
  }
  return p;
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "'" << (part) << "' not in: " << (msg)

}  // namespace

TEST(CliFlags, ValidValuesParse) {
  Parsed p = parse({"--lengths", "1,2,8", "--steps", "7"});
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.lengths, (std::vector<int64_t>{1, 2, 8}));
  EXPECT_EQ(p.steps, 7);
  EXPECT_EQ(parse({}).lengths, (std::vector<int64_t>{1, 2, 4})) << "the default stays when the flag is absent";
}

TEST(CliFlags, BadValuesNameTheFlagAndTheRange) {
  EXPECT_HAS(parse({"--steps", "-3"}).error, "--steps: must be an integer between 0 and 1125899906842624, got -3");
  EXPECT_HAS(parse({"--steps", "1x"}).error, "got '1x'");
  EXPECT_HAS(parse({"--steps", "99999999999999999999"}).error, "does not fit a 64-bit integer");
  EXPECT_HAS(parse({"--lengths", "1,,2"}).error, "--lengths: item 2 of '1,,2' must be an integer between 1 and 1024, got an empty value");
  EXPECT_HAS(parse({"--lengths", "1,2,"}).error, "item 3");
  EXPECT_HAS(parse({"--lengths", "0"}).error, "got 0");
  EXPECT_HAS(parse({"--lengths", "2,99999999999999999999"}).error, "item 2");
  EXPECT_HAS(parse({"--lengths", "2,99999999999999999999"}).error, "does not fit");
}
