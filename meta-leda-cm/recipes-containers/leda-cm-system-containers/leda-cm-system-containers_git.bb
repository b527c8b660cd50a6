SUMMARY = "System container manifests that leda-cm deploys at first boot"
DESCRIPTION = "Installs the container manifests of the leda-cm repository's recipes/ \
directory (one subdirectory per set) where leda-cm's deployment reads them."
SECTION = "containers"

require recipes-containers/leda-cm/leda-cm-src.inc

inherit allarch

# The sets (subdirectories of recipes/) that go into the image: core (databroker, sua,
# cloudconnector, vum), examples (seatservice, hvac, feedercan), demo.
LEDA_CM_CONTAINER_SETS ??= "core"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${LEDA_CM_MANIFESTS_DIR}
    for set in ${LEDA_CM_CONTAINER_SETS}; do
        if [ ! -d "${S}/recipes/$set" ]; then
            bbfatal "no container set '$set': ${S}/recipes/$set does not exist (LEDA_CM_CONTAINER_SETS = \"${LEDA_CM_CONTAINER_SETS}\")"
        fi
        for manifest in "${S}/recipes/$set"/*.json; do
            [ -e "$manifest" ] || bbfatal "container set '$set' holds no *.json manifest"
            name=$(basename "$manifest")
            if [ -e "${D}${LEDA_CM_MANIFESTS_DIR}/$name" ]; then
                bbfatal "two container sets hold $name"
            fi
            install -m 0644 "$manifest" "${D}${LEDA_CM_MANIFESTS_DIR}/$name"
        done
    done
}

FILES:${PN} += "${LEDA_CM_MANIFESTS_DIR}"
RDEPENDS:${PN} = "leda-cm"
