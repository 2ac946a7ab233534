// The training config: what a TOML dump of it (saved in every checkpoint) reads back as, and
// values the parser must refuse.
#include <gtest/gtest.h>

#include "loom/core/error.h"
#include "loom/train/config.h"

using namespace loom;

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
