// libFuzzer target for the bulk-import parser: the CSV reader (fed in
// chunks whose size comes from the input) and header mapping + row
// validation of every record. Invariants checked: records come in line
// order, fields respect the limits, clean records re-encode to the same
// fields, and validation never crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "services/identity/import/csv_reader.h"
#include "services/identity/import/rows.h"

namespace {

using ::guestlist::identity::import::CsvLimits;
using ::guestlist::identity::import::CsvReader;
using ::guestlist::identity::import::CsvRecord;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace imp = ::guestlist::identity::import;
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  CsvLimits limits;
  limits.max_field_bytes = 256;
  limits.max_record_bytes = 1024;
  limits.max_fields = 32;
  CsvReader reader(limits);
  std::vector<CsvRecord> records;
  for (size_t i = 0; i < input.size(); i += chunk) {
    reader.Feed(absl::string_view(input).substr(i, chunk), &records);
  }
  reader.Finish(&records);
  int last_line = 0;
  for (const CsvRecord& r : records) {
    Check(r.line > last_line);
    last_line = r.line;
    Check(r.fields.size() <= limits.max_fields);
    for (const std::string& f : r.fields) {
      Check(f.size() <= limits.max_field_bytes);
    }
    if (r.error.empty()) {
      for (const std::string& f : r.fields) Check(imp::IsValidUtf8(f));
      // A clean record survives encode -> parse unchanged.
      CsvLimits same;
      same.delimiter = reader.delimiter();
      CsvReader again(same);
      std::vector<CsvRecord> back;
      again.Feed(imp::EncodeCsvLine(r.fields, reader.delimiter()), &back);
      again.Finish(&back);
      const bool starts_with_bom = r.fields[0].rfind("\xEF\xBB\xBF", 0) == 0;
      if (!(r.fields.size() == 1 && r.fields[0].empty()) && !starts_with_bom) {
        Check(back.size() == 1 && back[0].fields == r.fields);
      }
    }
  }
  if (records.empty()) return 0;
  auto header = imp::MapHeader(records[0].fields, {"sales-dashboard"});
  if (!header.ok()) return 0;
  imp::RowContext context;
  context.groups_by_name["partners"] = imp::GroupRef{"g1", "Partners"};
  imp::DuplicateTracker duplicates;
  for (size_t i = 1; i < records.size(); ++i) {
    imp::RowIntent row = imp::ValidateRow(*header, records[i], context);
    duplicates.Check(row);
    Check(row.line == records[i].line);
  }
  return 0;
}
