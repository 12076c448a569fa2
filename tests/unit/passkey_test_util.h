#pragma once
// A word-level stand-in for a tokenizer for the passkey tests (no SentencePiece module needed).
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace samba::testing {

// A word-level stand-in for a tokenizer: every word (split at spaces, '.' and '?' their own
// words) gets the next free id; digits are one token each, so keys are copyable tokens.
struct WordEncoder {
  std::shared_ptr<std::map<std::string, int32_t>> ids = std::make_shared<std::map<std::string, int32_t>>();
  std::vector<int32_t> operator()(const std::string& text) const {
    std::vector<int32_t> out;
    std::string word;
    auto flush = [&] {
      if (word.empty()) return;
      auto it = ids->find(word);
      if (it == ids->end()) it = ids->emplace(word, 13 + static_cast<int32_t>(ids->size())).first;
      out.push_back(it->second);
      word.clear();
    };
    for (char c : text) {
      if (c >= '0' && c <= '9') {
        flush();
        out.push_back(3 + (c - '0'));  // digits are ids 3..12
      } else if (c == ' ') {
        flush();
      } else if (c == '.' || c == '?') {
        flush();
        word = c;
        flush();
      } else {
        word += c;
      }
    }
    flush();
    return out;
  }
};

}  // namespace samba::testing
