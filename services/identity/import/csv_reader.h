// A streaming RFC 4180 CSV reader for uploaded guest lists: bytes arrive in
// chunks of any size (gRPC stream messages), complete records come out as
// soon as they end. Handles quoted fields with delimiters, escaped quotes
// and line breaks; CRLF, LF and CR line ends; a leading UTF-8 BOM; `;` as
// the delimiter when the header line has more `;` than `,` (what
// spreadsheets write in locales with a decimal comma). Problems of one
// record (invalid UTF-8, a field or record over the limits, stray quotes)
// are reported on that record so the rest of the file still parses.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace guestlist::identity::import {

struct CsvLimits {
  size_t max_field_bytes = 64 * 1024;
  size_t max_record_bytes = 1024 * 1024;
  size_t max_fields = 1000;
  // 0: detect from the header line; otherwise the delimiter to use.
  char delimiter = 0;
};

// One record of the file.
struct CsvRecord {
  // 1-based physical line where the record starts (a quoted line break
  // makes a record span several lines).
  int line = 0;
  std::vector<std::string> fields;
  // Empty when the record is well formed; otherwise what is wrong (the
  // fields hold what could be read).
  std::string error;
  // Index of the first field that is not valid UTF-8, or -1.
  int invalid_utf8_field = -1;
};

class CsvReader final {
 public:
  explicit CsvReader(CsvLimits limits = CsvLimits()) : limits_(limits) {}

  // Consumes `chunk`; appends the records it completes to `out`.
  void Feed(absl::string_view chunk, std::vector<CsvRecord>* out);
  // Ends the input: appends the last record (if any) to `out`. An
  // unterminated quoted field is reported on that record.
  void Finish(std::vector<CsvRecord>* out);

  // The delimiter in use (',' until the header line decided otherwise).
  char delimiter() const { return delimiter_; }
  // Bytes consumed so far (BOM included).
  size_t bytes() const { return bytes_; }

 private:
  enum class State {
    kFieldStart,     // at the start of a field
    kUnquoted,       // inside an unquoted field
    kQuoted,         // inside a quoted field
    kQuoteInQuoted,  // saw `"` inside a quoted field: end or escaped quote
    kAfterQuoted,    // after the closing quote, junk before the delimiter
  };

  void Parse(absl::string_view data, std::vector<CsvRecord>* out);
  void AppendChar(char c);
  void EndField();
  void EndRecord(std::vector<CsvRecord>* out);
  void SetError(const std::string& error);
  // Handles `c` as a line end; returns true if it was one.
  bool HandleLineEnd(char c, std::vector<CsvRecord>* out);

  const CsvLimits limits_;
  char delimiter_ = ',';
  bool delimiter_decided_ = false;
  bool bom_checked_ = false;
  std::string pending_;  // bytes held back until BOM / delimiter decided
  size_t bytes_ = 0;

  State state_ = State::kFieldStart;
  bool last_was_cr_ = false;  // swallow the LF of a CRLF
  int line_ = 1;
  CsvRecord record_;
  bool record_started_ = false;
  std::string field_;
  bool field_quoted_ = false;
  bool field_truncated_ = false;
  size_t record_bytes_ = 0;
  bool record_truncated_ = false;
};

// Whether `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(absl::string_view s);

// Encodes one record as a CSV line (RFC 4180 quoting where needed), with
// `delimiter` and CRLF at the end.
std::string EncodeCsvLine(const std::vector<std::string>& fields,
                          char delimiter = ',');

}  // namespace guestlist::identity::import
