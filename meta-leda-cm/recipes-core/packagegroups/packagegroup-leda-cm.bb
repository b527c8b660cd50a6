SUMMARY = "leda-cm and the container stack it runs on"
DESCRIPTION = "leda-cm with its system containers, containerd, the OCI runtime, the CNI \
plugins and the local MQTT broker."

inherit packagegroup

# The runtime (runc by default) and the CNI plugins follow meta-virtualization's choices.
RDEPENDS:${PN} = "\
    ${VIRTUAL-RUNTIME_container_networking} \
    ${VIRTUAL-RUNTIME_container_runtime} \
    iptables \
    leda-cm \
    leda-cm-system-containers \
    mosquitto \
    virtual-containerd \
"

# Container file systems and bridge networking; built into some kernels, hence recommends.
RRECOMMENDS:${PN} = "\
    kernel-module-overlay \
    kernel-module-bridge \
    kernel-module-veth \
    kernel-module-nf-nat \
    kernel-module-xt-masquerade \
    kernel-module-xt-addrtype \
"
