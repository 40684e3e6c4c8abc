# package.cmake - install rules for everything but the two binaries (cli/ and daemon/ install
# those), and the Debian package built by CPack: `make package`, or `cpack -G DEB` in the build
# folder. Included at the end of the top-level CMakeLists.txt.
#
# Paths follow Debian 12: systemd units in /lib/systemd/system (bookworm's systemd does not
# look in /usr/lib/systemd/system for packaged units), sysusers.d and tmpfiles.d snippets in
# /usr/lib, documentation in /usr/share/doc/cwt.

set(CWT_PKG_SRC ${CMAKE_SOURCE_DIR}/packaging)
set(CWT_PKG_BIN ${CMAKE_BINARY_DIR}/packaging)
set(CWT_DOC_DIR share/doc/cwt)

find_program(CWT_GZIP gzip REQUIRED)

# Man pages and the Debian changelog are installed gzip-compressed, as Debian policy wants.
# -n leaves the name and time stamp out, so the package builds reproducibly.
set(CWT_MAN_PAGES cwtctl.1 cwtd.8 cwtd.conf.5 cwt-roster.5)
set(CWT_GZ_OUTPUTS)
foreach(page ${CWT_MAN_PAGES})
  set(out ${CWT_PKG_BIN}/man/${page}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CWT_PKG_BIN}/man
    COMMAND ${CWT_GZIP} -9n -c ${CWT_PKG_SRC}/man/${page} > ${out}
    DEPENDS ${CWT_PKG_SRC}/man/${page}
    COMMENT "Compressing man page ${page}" VERBATIM)
  list(APPEND CWT_GZ_OUTPUTS ${out})
  string(REGEX MATCH "[0-9]$" section ${page})
  install(FILES ${out} DESTINATION share/man/man${section})
endforeach()
set(out ${CWT_PKG_BIN}/changelog.gz)
add_custom_command(OUTPUT ${out}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CWT_PKG_BIN}
  COMMAND ${CWT_GZIP} -9n -c ${CWT_PKG_SRC}/debian/changelog > ${out}
  DEPENDS ${CWT_PKG_SRC}/debian/changelog
  COMMENT "Compressing the Debian changelog" VERBATIM)
list(APPEND CWT_GZ_OUTPUTS ${out})
add_custom_target(cwt_package_files ALL DEPENDS ${CWT_GZ_OUTPUTS})

install(FILES ${CWT_PKG_BIN}/changelog.gz ${CWT_PKG_SRC}/debian/copyright
        DESTINATION ${CWT_DOC_DIR})
install(FILES ${CWT_PKG_SRC}/cwtd.conf.example DESTINATION ${CWT_DOC_DIR}/examples
        RENAME cwtd.conf)
install(FILES ${CWT_PKG_SRC}/roster.conf.example DESTINATION ${CWT_DOC_DIR}/examples
        RENAME roster.conf)
# The guides, and the format documents they cite (auditors check bundles, audit exports and
# key lines against them on a machine that has only the package).
install(FILES ${CMAKE_SOURCE_DIR}/docs/admin-guide.md ${CMAKE_SOURCE_DIR}/docs/auditor-guide.md
              ${CMAKE_SOURCE_DIR}/docs/threat-model.md
              ${CMAKE_SOURCE_DIR}/docs/systemd-hardening.md
              ${CMAKE_SOURCE_DIR}/docs/bundle-format.md ${CMAKE_SOURCE_DIR}/docs/audit-format.md
              ${CMAKE_SOURCE_DIR}/docs/keys.md ${CMAKE_SOURCE_DIR}/docs/json.md
        DESTINATION ${CWT_DOC_DIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/schemas DESTINATION ${CWT_DOC_DIR})
install(FILES ${CWT_PKG_SRC}/bash-completion/cwtctl
        DESTINATION share/bash-completion/completions)
install(FILES ${CWT_PKG_SRC}/cwt.sysusers DESTINATION lib/sysusers.d RENAME cwt.conf)
install(FILES ${CWT_PKG_SRC}/cwt.tmpfiles DESTINATION lib/tmpfiles.d RENAME cwt.conf)
# Absolute on purpose: the unit directory is /lib/systemd/system whatever the prefix.
install(FILES ${CWT_PKG_SRC}/cwtd.service ${CWT_PKG_SRC}/cwtd-trainer.socket
              ${CWT_PKG_SRC}/cwtd-trainer@.service DESTINATION /lib/systemd/system)
# The configuration folder; /etc/cwt/cwtd.conf itself is the admin's (see the admin guide),
# so the package ships no conffile that an upgrade could fight over.
install(DIRECTORY DESTINATION /etc/cwt)

# Full RELRO and immediate binding for the installed programs (Debian's hardening defaults;
# PIE is the compiler's default on Debian already).
foreach(prog cwtctl cwtd)
  if(TARGET ${prog})
    target_link_options(${prog} PRIVATE -Wl,-z,relro -Wl,-z,now)
  endif()
endforeach()

# ---------------------------------------------------------------- CPack: one .deb
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cwt)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "The cwt authors")
set(CPACK_PACKAGE_CONTACT "cwt maintainers <cwt-maintainers@example.org>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/cwt")
# Library dependencies come from dpkg-shlibdeps (libsodium23, liblmdb0, libconfig9,
# libvulkan1, libpng16-16, libjpeg62-turbo, libdcmtk17, libseccomp2, ...); what the programs
# load at run time without linking is listed by hand: a Vulkan driver (Mesa's includes
# lavapipe, the CPU fallback) and systemd for the unit and the sysusers/tmpfiles snippets.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "mesa-vulkan-drivers | vulkan-icd, systemd")
# CPack indents every line after the first by one space itself.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "cyclical weight transfer: train one model across hospitals
cwt lets several hospitals train one medical-imaging model without any
patient image leaving its site. The model visits each site in turn, trains
there on local images, and moves on as a signed, encrypted weight bundle
carried by file drop or USB stick, so air-gapped sites can take part.
.
This package contains cwtd, the hardened site daemon that keeps the images,
trains on the GPU (Vulkan; Mesa lavapipe on the CPU where there is no GPU)
and seals and opens bundles, and cwtctl, the command line for site
administrators, auditors and researchers.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CWT_PKG_SRC}/debian/postinst ${CWT_PKG_SRC}/debian/prerm ${CWT_PKG_SRC}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
