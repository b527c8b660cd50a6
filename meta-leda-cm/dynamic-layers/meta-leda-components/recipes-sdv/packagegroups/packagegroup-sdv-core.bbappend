# Eclipse Leda's core packagegroup with leda-cm in place of Kanto's container-management and
# kanto-auto-deployer, only for a distro that asks for it with DISTRO_FEATURES "leda-cm".
# Otherwise nothing is included: the recipe, and its signatures, stay as they are.
require ${@bb.utils.contains('DISTRO_FEATURES', 'leda-cm', 'packagegroup-sdv-core-leda-cm.inc', '', d)}
