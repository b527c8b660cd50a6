SUMMARY = "The local MQTT broker for leda-cm: local, authenticated clients, an ACL"
DESCRIPTION = "Runs mosquitto with a configuration that accepts only local clients with a \
password (made at first boot), and an ACL that lets only the update manager send desired \
states to leda-cm and only the cloud connector send twin commands."
HOMEPAGE = "https://github.com/eclipse-leda/leda-cm"
BUGTRACKER = "https://github.com/eclipse-leda/leda-cm/issues"
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# The layer's own files, no sources to fetch.
SRC_URI = "\
    file://LICENSE \
    file://leda-cm-mqtt-setup \
    file://leda-cm-mqtt-setup.service \
    file://leda-cm.acl \
    file://mosquitto-leda-cm.conf \
    file://mosquitto.conf \
    file://sysctl.conf \
"

inherit allarch systemd

# Where the passwords live (writable: Leda's root file system is read-only).
LEDA_CM_MQTT_STATE ??= "${localstatedir}/lib/leda-cm-mqtt"
LEDA_CM_MQTT_CONF_DIR ??= "${sysconfdir}/mosquitto/leda-cm"
LEDA_CM_MQTT_PORT ??= "1883"
# The gateway of leda-cm's container bridge (pinned in leda-cm's configuration at first
# boot): containers reach the broker there.
LEDA_CM_MQTT_BRIDGE_ADDR ??= "172.17.0.1"
LEDA_CM_MQTT_BRIDGE_PREFIX ??= "16"
# The clients that get a password: the ACL's users.
LEDA_CM_MQTT_USERS ??= "leda-cm vum sua cloudconnector"
# leda-cm's state dir (its configuration drop-ins), as in leda-cm.inc.
LEDA_CM_STATE_DIR ??= "${localstatedir}/lib/container-management"

# Where the file:// sources land: UNPACKDIR from styhead on, WORKDIR on scarthgap.
LEDA_CM_MQTT_FILES = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${LEDA_CM_MQTT_FILES}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    subst() {
        sed -e 's,@LEDA_CM_MQTT_STATE@,${LEDA_CM_MQTT_STATE},g' \
            -e 's,@LEDA_CM_MQTT_CONF_DIR@,${LEDA_CM_MQTT_CONF_DIR},g' \
            -e 's,@LEDA_CM_MQTT_PORT@,${LEDA_CM_MQTT_PORT},g' \
            -e 's,@LEDA_CM_MQTT_BRIDGE_ADDR@,${LEDA_CM_MQTT_BRIDGE_ADDR},g' \
            -e 's,@LEDA_CM_MQTT_BRIDGE_PREFIX@,${LEDA_CM_MQTT_BRIDGE_PREFIX},g' \
            -e 's,@LEDA_CM_MQTT_USERS@,${LEDA_CM_MQTT_USERS},g' \
            -e 's,@LEDA_CM_STATE_DIR@,${LEDA_CM_STATE_DIR},g' \
            -e 's,@LIBEXECDIR@,${libexecdir},g' "$1"
    }
    install -d ${D}${LEDA_CM_MQTT_CONF_DIR}/conf.d ${D}${libexecdir} \
        ${D}${systemd_system_unitdir}/mosquitto.service.d ${D}${sysconfdir}/sysctl.d
    subst ${LEDA_CM_MQTT_FILES}/mosquitto.conf >${D}${LEDA_CM_MQTT_CONF_DIR}/leda-cm.conf
    install -m 0644 ${LEDA_CM_MQTT_FILES}/leda-cm.acl ${D}${LEDA_CM_MQTT_CONF_DIR}/leda-cm.acl
    install -m 0755 ${LEDA_CM_MQTT_FILES}/leda-cm-mqtt-setup ${D}${libexecdir}/leda-cm-mqtt-setup
    subst ${LEDA_CM_MQTT_FILES}/leda-cm-mqtt-setup.service \
        >${D}${systemd_system_unitdir}/leda-cm-mqtt-setup.service
    subst ${LEDA_CM_MQTT_FILES}/mosquitto-leda-cm.conf \
        >${D}${systemd_system_unitdir}/mosquitto.service.d/10-leda-cm.conf
    install -m 0644 ${LEDA_CM_MQTT_FILES}/sysctl.conf ${D}${sysconfdir}/sysctl.d/60-leda-cm-mqtt.conf
    chmod 0644 ${D}${LEDA_CM_MQTT_CONF_DIR}/leda-cm.conf \
        ${D}${systemd_system_unitdir}/leda-cm-mqtt-setup.service \
        ${D}${systemd_system_unitdir}/mosquitto.service.d/10-leda-cm.conf
}

SYSTEMD_SERVICE:${PN} = "leda-cm-mqtt-setup.service"
SYSTEMD_AUTO_ENABLE = "enable"

FILES:${PN} += "\
    ${LEDA_CM_MQTT_CONF_DIR} \
    ${libexecdir}/leda-cm-mqtt-setup \
    ${systemd_system_unitdir}/mosquitto.service.d \
    ${sysconfdir}/sysctl.d \
"
CONFFILES:${PN} = "${LEDA_CM_MQTT_CONF_DIR}/leda-cm.conf ${LEDA_CM_MQTT_CONF_DIR}/leda-cm.acl"

# mosquitto_passwd comes with the broker.
RDEPENDS:${PN} = "mosquitto"
