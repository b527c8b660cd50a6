//! Decoding of the metrics payloads of containerd's runc shim: cgroup v1
//! (`io.containerd.cgroups.v1.Metrics`) and cgroup v2 (`io.containerd.cgroups.v2.Metrics`).
//! `containerd-client` does not carry these messages; the fields below are the subset
//! leda-cm reads, with the field numbers of containerd/cgroups' metrics.proto.

use prost::Message;

use crate::runtime::Metrics;

pub const V1: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2: &str = "io.containerd.cgroups.v2.Metrics";

mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub pids: Option<PidsStat>,
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "5")]
        pub blkio: Option<BlkIoStat>,
        #[prost(message, repeated, tag = "7")]
        pub network: Vec<NetworkStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PidsStat {
        #[prost(uint64, tag = "1")]
        pub current: u64,
        #[prost(uint64, tag = "2")]
        pub limit: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        #[prost(uint64, tag = "1")]
        pub total: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "1")]
        pub cache: u64,
        #[prost(uint64, tag = "2")]
        pub rss: u64,
        #[prost(uint64, tag = "31")]
        pub total_inactive_file: u64,
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "1")]
        pub limit: u64,
        #[prost(uint64, tag = "2")]
        pub usage: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoStat {
        #[prost(message, repeated, tag = "1")]
        pub io_service_bytes_recursive: Vec<BlkIoEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoEntry {
        #[prost(string, tag = "1")]
        pub op: String,
        #[prost(uint64, tag = "5")]
        pub value: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NetworkStat {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(uint64, tag = "2")]
        pub rx_bytes: u64,
        #[prost(uint64, tag = "6")]
        pub tx_bytes: u64,
    }
}

mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "1")]
        pub pids: Option<PidsStat>,
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "6")]
        pub io: Option<IoStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PidsStat {
        #[prost(uint64, tag = "1")]
        pub current: u64,
        #[prost(uint64, tag = "2")]
        pub limit: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "32")]
        pub usage: u64,
        #[prost(uint64, tag = "33")]
        pub usage_limit: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoStat {
        #[prost(message, repeated, tag = "1")]
        pub usage: Vec<IoEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoEntry {
        #[prost(uint64, tag = "3")]
        pub rbytes: u64,
        #[prost(uint64, tag = "4")]
        pub wbytes: u64,
    }
}

/// A cgroup's "no limit" as the kernel reports it (page-aligned i64::MAX).
fn limit(value: u64) -> u64 {
    if value >= 0x7FFF_FFFF_FFFF_F000 {
        0
    } else {
        value
    }
}

/// Memory used as `docker stats` counts it: usage minus the inactive page cache.
pub fn decode(type_url: &str, bytes: &[u8]) -> Result<Metrics, String> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match name {
        V1 => {
            let m = v1::Metrics::decode(bytes).map_err(|e| format!("{V1}: {e}"))?;
            let mem = m.memory.unwrap_or_default();
            let usage = mem.usage.unwrap_or_default();
            let (mut read, mut write) = (0, 0);
            for e in m.blkio.unwrap_or_default().io_service_bytes_recursive {
                match e.op.to_ascii_lowercase().as_str() {
                    "read" => read += e.value,
                    "write" => write += e.value,
                    _ => {}
                }
            }
            Ok(Metrics {
                timestamp: None,
                cpu_total_ns: m.cpu.and_then(|c| c.usage).map_or(0, |u| u.total),
                memory_used: usage.usage.saturating_sub(mem.total_inactive_file),
                memory_limit: limit(usage.limit),
                io_read_bytes: read,
                io_write_bytes: write,
                net_rx_bytes: m.network.iter().map(|n| n.rx_bytes).sum(),
                net_tx_bytes: m.network.iter().map(|n| n.tx_bytes).sum(),
                pids: m.pids.map_or(0, |p| p.current),
            })
        }
        V2 => {
            let m = v2::Metrics::decode(bytes).map_err(|e| format!("{V2}: {e}"))?;
            let mem = m.memory.unwrap_or_default();
            let io = m.io.unwrap_or_default();
            Ok(Metrics {
                timestamp: None,
                cpu_total_ns: m.cpu.map_or(0, |c| c.usage_usec.saturating_mul(1000)),
                memory_used: mem.usage.saturating_sub(mem.inactive_file),
                memory_limit: limit(mem.usage_limit),
                io_read_bytes: io.usage.iter().map(|e| e.rbytes).sum(),
                io_write_bytes: io.usage.iter().map(|e| e.wbytes).sum(),
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                pids: m.pids.map_or(0, |p| p.current),
            })
        }
        other => Err(format!("unknown metrics type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_v1() {
        let m = v1::Metrics {
            pids: Some(v1::PidsStat {
                current: 3,
                limit: 0,
            }),
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage { total: 123_456 }),
            }),
            memory: Some(v1::MemoryStat {
                cache: 10,
                rss: 20,
                total_inactive_file: 1000,
                usage: Some(v1::MemoryEntry {
                    limit: 0x7FFF_FFFF_FFFF_F000,
                    usage: 5000,
                }),
            }),
            blkio: Some(v1::BlkIoStat {
                io_service_bytes_recursive: vec![
                    v1::BlkIoEntry {
                        op: "Read".into(),
                        value: 7,
                    },
                    v1::BlkIoEntry {
                        op: "Write".into(),
                        value: 9,
                    },
                    v1::BlkIoEntry {
                        op: "Read".into(),
                        value: 1,
                    },
                    v1::BlkIoEntry {
                        op: "Total".into(),
                        value: 17,
                    },
                ],
            }),
            network: vec![],
        };
        let got = decode(V1, &m.encode_to_vec()).unwrap();
        assert_eq!(got.cpu_total_ns, 123_456);
        assert_eq!(got.memory_used, 4000);
        assert_eq!(got.memory_limit, 0);
        assert_eq!((got.io_read_bytes, got.io_write_bytes), (8, 9));
        assert_eq!(got.pids, 3);
        // The type URL may carry a prefix.
        assert!(decode(&format!("types.example/{V1}"), &m.encode_to_vec()).is_ok());
    }

    #[test]
    fn decodes_v2() {
        let m = v2::Metrics {
            pids: Some(v2::PidsStat {
                current: 2,
                limit: 10,
            }),
            cpu: Some(v2::CpuStat { usage_usec: 1500 }),
            memory: Some(v2::MemoryStat {
                inactive_file: 100,
                usage: 900,
                usage_limit: 4096,
            }),
            io: Some(v2::IoStat {
                usage: vec![
                    v2::IoEntry {
                        rbytes: 5,
                        wbytes: 6,
                    },
                    v2::IoEntry {
                        rbytes: 1,
                        wbytes: 1,
                    },
                ],
            }),
        };
        let got = decode(V2, &m.encode_to_vec()).unwrap();
        assert_eq!(got.cpu_total_ns, 1_500_000);
        assert_eq!((got.memory_used, got.memory_limit), (800, 4096));
        assert_eq!((got.io_read_bytes, got.io_write_bytes), (6, 7));
        assert_eq!(got.pids, 2);
        assert!(decode("io.example.Metrics", &[]).is_err());
        assert!(decode(V2, &[0xff, 0xff]).is_err());
    }
}
