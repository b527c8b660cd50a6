//! `leda-cm-logd`: a container's log driver, as containerd's shim starts it through the
//! `binary://` log URI that leda-cm gives each task (protocol and arguments in
//! `leda_cm::logs`). One such process runs per container, so it is a binary of its own: it
//! links the driver and std only, and maps and dirties a fraction of what the multi-call
//! `leda-cm` would (figures in ARCHITECTURE.md, "Container logs").

fn main() {
    std::process::exit(leda_cm::logs::run_driver(std::env::args_os().collect()));
}
