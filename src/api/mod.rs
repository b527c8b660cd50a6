//! The local API: Kanto container-management's gRPC `containers` and `sysinfo` services on
//! a unix socket, wire-compatible with Kanto's clients (same proto package, service and
//! message names, field numbers; the .proto files are leda-cm's own, in `src/api/proto`).
//!
//! `pb` is the generated code; `convert` maps it to and from the container model (pure);
//! `server` serves it (adapter: tonic/hyper), behind `authority`, which lets h2 accept
//! whatever `:authority` a client sends; `client` is the CLI's side.

pub mod authority;
pub mod client;
pub mod convert;
pub mod server;

/// Generated from `src/api/proto` (see build.rs); module nesting follows the proto packages.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod services {
        pub mod containers {
            tonic::include_proto!(
                "github.com.eclipse_kanto.container_management.containerm.api.services.containers"
            );
        }
        pub mod sysinfo {
            tonic::include_proto!(
                "github.com.eclipse_kanto.container_management.containerm.api.services.sysinfo"
            );
        }
    }
    pub mod types {
        pub mod containers {
            tonic::include_proto!(
                "github.com.eclipse_kanto.container_management.containerm.api.types.containers"
            );
        }
        pub mod sysinfo {
            tonic::include_proto!(
                "github.com.eclipse_kanto.container_management.containerm.api.types.sysinfo"
            );
        }
    }
}

/// Kanto's API version string reported by `sysinfo`.
pub const API_VERSION: &str = "1.0.0";
