SUMMARY = "Container management for Eclipse Leda on containerd"
DESCRIPTION = "leda-cm runs containers on containerd, answers the digital twin and the \
update agent over MQTT, provisions the system containers at first boot, and speaks Eclipse \
Kanto's local API and kanto-cm CLI: a drop-in for Kanto's container-management."
SECTION = "containers"

require leda-cm-src.inc
require leda-cm-crates.inc
require leda-cm.inc
