// The training config: what a TOML dump of it (saved in every checkpoint) reads back as, and
// values the parser must refuse.
#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/train/config.h"

using namespace loom;

TEST(Config, DumpReadsBackAsTheSameConfig) {
  // toml++ wrote a string holding ''' and a newline as a multi-line literal string that the
  // value itself ended early.
  const std::string odd = "a'''b\nc \"quoted\" \\ tab\t caf\xC3\xA9 '''";
  const train::TrainConfig c = train::parse_config("[data]\ntrain = \"x.bin\"\n", "a.toml", {"data.val=" + odd, "optimizer.lr=3e-4"});
  ASSERT_EQ(c.data_val, odd);
  const std::string dumped = train::to_toml(c);
  const train::TrainConfig back = train::parse_config(dumped, "dumped.toml", {});
  EXPECT_EQ(back.data_val, odd);
  EXPECT_EQ(back.lr, 3e-4);
  EXPECT_EQ(train::to_toml(back), dumped);
}

TEST(Config, OverrideThatIsNotUtf8IsAnError) {
  // TOML is UTF-8: the dump would have saved these bytes as other characters.
  try {
    train::parse_config("", "a.toml", {"data.train=train\x9F\x96.bin"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.train"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
  }
}
