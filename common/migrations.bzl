"""sql_migrations: embeds a service's migrations/*.sql into a C++ library.

Generates `std::vector<guestlist::Migration> <function>()` so binaries
carry their schema and need no files at run time.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def sql_migrations(name, srcs, function, namespace):
    """Defines cc_library `name` exposing `namespace::function()`.

    Args:
      name: library name; its header is <name>.h.
      srcs: the .sql files (V001__..., applied in name order).
      function: the generated function's name.
      namespace: C++ namespace of the function.
    """
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = [name + ".h", name + ".cc"],
        cmd = """
set -e
H=$(location {name}.h); C=$(location {name}.cc)
printf '#pragma once\\n#include <vector>\\n#include "common/migrations.h"\\nnamespace {ns} {{\\nstd::vector<guestlist::Migration> {fn}();\\n}}\\n' > $$H
printf '#include "%s"\\nnamespace {ns} {{\\nstd::vector<guestlist::Migration> {fn}() {{\\n  return {{\\n' "$$(echo $$H | sed 's|.*/bin/||')" > $$C
for f in $(SRCS); do
  v=$$(basename $$f .sql)
  printf '    {{"%s", R"guestlist_sql(' "$$v" >> $$C
  cat $$f >> $$C
  printf ')guestlist_sql"}},\\n' >> $$C
done
printf '  }};\\n}}\\n}}\\n' >> $$C
""".format(name = name, ns = namespace, fn = function),
    )
    cc_library(
        name = name,
        srcs = [name + ".cc"],
        hdrs = [name + ".h"],
        deps = ["//common:migrations"],
    )
