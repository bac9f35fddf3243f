"""cc_grpc_package: turns .proto files into one C++ gRPC library.

Runs the system protoc with the gRPC C++ plugin (Debian packages) in a
genrule; no rules_proto / grpc repositories are needed, so it works offline.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def cc_grpc_package(name, srcs, deps = [], grpc = True, visibility = None):
    """Generates <name> (cc_library) from srcs (paths relative to //protos).

    Args:
      name: library name.
      srcs: .proto files of this package.
      deps: other cc_grpc_package libraries the protos import.
      grpc: whether to generate service stubs as well.
      visibility: passed to the library.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs.append(base + ".pb.h")
        outs.append(base + ".pb.cc")
        if grpc:
            outs.append(base + ".grpc.pb.h")
            outs.append(base + ".grpc.pb.cc")
    grpc_flags = ""
    if grpc:
        grpc_flags = "--grpc_out=$(GENDIR)/protos --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin "
    native.genrule(
        name = name + "_codegen",
        # Imported protos must be inputs too, or the sandbox hides them.
        srcs = depset(srcs + native.glob(["google/api/*.proto"])).to_list(),
        outs = outs,
        cmd = ("/usr/bin/protoc -Iprotos -I/usr/include --cpp_out=$(GENDIR)/protos " +
               grpc_flags + " ".join(["protos/" + s for s in srcs])),
    )
    cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = deps + ["//third_party/system:grpc", "//third_party/system:protobuf"],
        visibility = visibility,
    )
