#include "services/identity/import/csv_reader.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace guestlist::identity::import {
namespace {

constexpr absl::string_view kBom = "\xEF\xBB\xBF";

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    p += n + 1;
  }
  return true;
}

std::string EncodeCsvLine(const std::vector<std::string>& fields,
                          char delimiter) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line.push_back(delimiter);
    const std::string& f = fields[i];
    const bool quote =
        f.find_first_of(std::string("\"\r\n") + delimiter) != std::string::npos;
    if (!quote) {
      line.append(f);
      continue;
    }
    line.push_back('"');
    for (char c : f) {
      if (c == '"') line.push_back('"');
      line.push_back(c);
    }
    line.push_back('"');
  }
  line.append("\r\n");
  return line;
}

void CsvReader::Feed(absl::string_view chunk, std::vector<CsvRecord>* out) {
  bytes_ += chunk.size();
  if (!delimiter_decided_ && limits_.delimiter != 0 && bom_checked_) {
    delimiter_ = limits_.delimiter;
    delimiter_decided_ = true;
  }
  if (delimiter_decided_) {
    Parse(chunk, out);
    return;
  }
  // Hold bytes back until the BOM is known and the header line is complete,
  // since the delimiter must be decided before the first field ends.
  pending_.append(chunk.data(), chunk.size());
  if (!bom_checked_) {
    if (pending_.size() < kBom.size() && absl::StartsWith(kBom, pending_)) {
      return;
    }
    bom_checked_ = true;
    if (absl::StartsWith(pending_, kBom)) pending_.erase(0, kBom.size());
  }
  bool in_quotes = false;
  size_t commas = 0;
  size_t semicolons = 0;
  bool line_complete = false;
  for (char c : pending_) {
    if (c == '"') {
      in_quotes = !in_quotes;
    } else if (!in_quotes) {
      if (c == ',') ++commas;
      if (c == ';') ++semicolons;
      if (c == '\n' || c == '\r') {
        line_complete = true;
        break;
      }
    }
  }
  if (limits_.delimiter != 0) {
    delimiter_ = limits_.delimiter;
  } else if (!line_complete && pending_.size() < limits_.max_record_bytes) {
    return;
  } else {
    delimiter_ = semicolons > commas ? ';' : ',';
  }
  delimiter_decided_ = true;
  std::string data = std::move(pending_);
  pending_.clear();
  Parse(data, out);
}

void CsvReader::Finish(std::vector<CsvRecord>* out) {
  if (!delimiter_decided_) {
    // A file without a line end: decide from what there is.
    if (!bom_checked_ && absl::StartsWith(pending_, kBom)) {
      pending_.erase(0, kBom.size());
    }
    bom_checked_ = true;
    size_t commas = 0;
    size_t semicolons = 0;
    bool in_quotes = false;
    for (char c : pending_) {
      if (c == '"') in_quotes = !in_quotes;
      if (!in_quotes && c == ',') ++commas;
      if (!in_quotes && c == ';') ++semicolons;
    }
    delimiter_ = limits_.delimiter != 0 ? limits_.delimiter
                 : semicolons > commas  ? ';'
                                        : ',';
    delimiter_decided_ = true;
    std::string data = std::move(pending_);
    pending_.clear();
    Parse(data, out);
  }
  if (state_ == State::kQuoted) {
    SetError(
        "a quoted field is not closed before the end of the file (a \" is "
        "missing)");
  }
  if (record_started_) {
    EndField();
    EndRecord(out);
  }
  state_ = State::kFieldStart;
}

void CsvReader::SetError(const std::string& error) {
  if (record_.error.empty()) record_.error = error;
}

void CsvReader::AppendChar(char c) {
  if (!record_started_) {
    record_started_ = true;
    record_.line = line_;
  }
  if (field_truncated_ || record_truncated_) return;
  if (field_.size() >= limits_.max_field_bytes) {
    field_truncated_ = true;
    SetError(absl::StrCat("field ", record_.fields.size() + 1,
                          " is longer than ", limits_.max_field_bytes,
                          " bytes"));
    return;
  }
  if (record_bytes_ >= limits_.max_record_bytes) {
    record_truncated_ = true;
    SetError(absl::StrCat("the record is longer than ",
                          limits_.max_record_bytes, " bytes"));
    return;
  }
  field_.push_back(c);
  ++record_bytes_;
}

void CsvReader::EndField() {
  if (!record_started_) {
    record_started_ = true;
    record_.line = line_;
  }
  if (record_.fields.size() >= limits_.max_fields) {
    SetError(absl::StrCat("the record has more than ", limits_.max_fields,
                          " fields"));
  } else {
    record_.fields.push_back(std::move(field_));
  }
  field_.clear();
  field_quoted_ = false;
  field_truncated_ = false;
}

void CsvReader::EndRecord(std::vector<CsvRecord>* out) {
  for (size_t i = 0; i < record_.fields.size(); ++i) {
    if (!IsValidUtf8(record_.fields[i])) {
      record_.invalid_utf8_field = static_cast<int>(i);
      SetError(
          absl::StrCat("field ", i + 1,
                       " is not valid UTF-8; save the file as \"CSV UTF-8\""));
      break;
    }
  }
  out->push_back(std::move(record_));
  record_ = CsvRecord();
  record_started_ = false;
  record_bytes_ = 0;
  record_truncated_ = false;
}

bool CsvReader::HandleLineEnd(char c, std::vector<CsvRecord>* out) {
  if (c != '\r' && c != '\n') return false;
  ++line_;
  // A line without any character is skipped (blank lines between records).
  if (record_started_) {
    EndField();
    EndRecord(out);
  }
  state_ = State::kFieldStart;
  return true;
}

void CsvReader::Parse(absl::string_view data, std::vector<CsvRecord>* out) {
  for (char c : data) {
    const bool prev_cr = last_was_cr_;
    last_was_cr_ = c == '\r';
    switch (state_) {
      case State::kQuoted:
        if (c == '"') {
          state_ = State::kQuoteInQuoted;
          break;
        }
        if (c == '\r' || (c == '\n' && !prev_cr)) ++line_;
        AppendChar(c);
        break;
      case State::kQuoteInQuoted:
        if (c == '"') {
          AppendChar('"');
          state_ = State::kQuoted;
          break;
        }
        if (c == delimiter_) {
          EndField();
          state_ = State::kFieldStart;
          break;
        }
        if (HandleLineEnd(c, out)) break;
        SetError(absl::StrCat(
            "field ", record_.fields.size() + 1,
            " has text after its closing quote; quote the whole field and "
            "double the quotes inside it"));
        AppendChar(c);
        state_ = State::kAfterQuoted;
        break;
      case State::kAfterQuoted:
        if (c == delimiter_) {
          EndField();
          state_ = State::kFieldStart;
          break;
        }
        if (HandleLineEnd(c, out)) break;
        AppendChar(c);
        break;
      case State::kFieldStart:
        if (c == '\n' && prev_cr) break;  // the LF of a CRLF
        if (c == '"') {
          if (!record_started_) {
            record_started_ = true;
            record_.line = line_;
          }
          field_quoted_ = true;
          state_ = State::kQuoted;
          break;
        }
        if (c == delimiter_) {
          EndField();
          break;
        }
        if (HandleLineEnd(c, out)) break;
        AppendChar(c);
        state_ = State::kUnquoted;
        break;
      case State::kUnquoted:
        if (c == delimiter_) {
          EndField();
          state_ = State::kFieldStart;
          break;
        }
        if (HandleLineEnd(c, out)) break;
        if (c == '"') {
          SetError(absl::StrCat(
              "field ", record_.fields.size() + 1,
              " has a quote but does not start with one; quote the whole "
              "field and double the quotes inside it"));
        }
        AppendChar(c);
        break;
    }
  }
}

}  // namespace guestlist::identity::import
