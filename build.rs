//! Generates the gRPC code of the local API (Kanto container-management's `containers` and
//! `sysinfo` services) from `src/api/proto`. Needs `protoc` (Debian: protobuf-compiler; Yocto:
//! protobuf-native) and no system include directory: the only well-known type imported,
//! `google/protobuf/empty.proto`, is in `src/api/proto`.

fn main() {
    let root = "src/api/proto";
    let protos = [
        "src/api/proto/api/services/containers/containers.proto",
        "src/api/proto/api/services/sysinfo/system_info.proto",
    ];
    println!("cargo:rerun-if-changed={root}");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &[root])
        .expect("generating the local API from src/api/proto");
}
