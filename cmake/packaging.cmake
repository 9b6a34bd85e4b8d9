# Debian packages with CPack (cpack -G DEB in the build directory; ci/packages.sh builds, checks
# and installs them). One package per install component (CMakeLists.txt, "install"):
#   libsmpalloc0    lib    the shared libraries (soname libsmpalloc.so.0, libsmpalloc_api.so.0)
#   libsmpalloc-dev dev    headers, static libraries, .so links, pkg-config and CMake files,
#                          man pages smpalloc(3) and smpalloc(7)
#   smpalloc-tools  tools  the smpalloc command and smpalloc(1), benchmark workloads and scripts,
#                          kvserver
# CPack rather than a debian/ directory: one build system describes the files once, the
# packages come from the same build tree the tests ran on, and no debhelper is needed. What
# debhelper would add, done here: stripped binaries, shlibs dependencies (dpkg-shlibdeps), the
# shlibs control file, md5sums, and a copyright file and changelog in each package's doc
# directory, which lintian asks for.
set(SMP_DEB_LIB libsmpalloc${PROJECT_VERSION_MAJOR})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put it before every package's own
# synopsis (the first line of its description below).
# Each package's /usr/share/doc/<package>/: copyright, and changelog.Debian.gz.
set(SMP_CHANGELOG_GZ ${CMAKE_CURRENT_BINARY_DIR}/debian-doc/changelog.Debian.gz)
foreach(entry "${SMP_DEB_LIB}:lib" "libsmpalloc-dev:dev" "smpalloc-tools:tools")
  string(REPLACE ":" ";" entry "${entry}")
  list(GET entry 0 package)
  list(GET entry 1 component)
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/packaging/copyright
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${package} COMPONENT ${component})
  install(FILES ${SMP_CHANGELOG_GZ}
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${package} COMPONENT ${component})
endforeach()
# The changelog, compressed at build time (lintian wants it gzip -9n, no timestamp).
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/packaging/changelog.Debian.in
  ${CMAKE_CURRENT_BINARY_DIR}/debian-doc/changelog.Debian @ONLY)
add_custom_command(OUTPUT ${SMP_CHANGELOG_GZ}
  COMMAND gzip -9nf -k ${CMAKE_CURRENT_BINARY_DIR}/debian-doc/changelog.Debian
  DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/debian-doc/changelog.Debian)
add_custom_target(smp_changelog ALL DEPENDS ${SMP_CHANGELOG_GZ})

set(CPACK_PACKAGE_NAME smpalloc)
set(CPACK_PACKAGE_VENDOR "smpalloc developers")
set(CPACK_PACKAGE_CONTACT "smpalloc developers <maintainers@smpalloc.example>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL lib dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
find_program(SMP_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(NOT SMP_DPKG_SHLIBDEPS)
  message(WARNING "dpkg-shlibdeps not found (Debian package dpkg-dev): cpack -G DEB would make "
    "packages without their library dependencies")
endif()
# kvserver links this build's libsmpalloc.so: dpkg-shlibdeps finds it here.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR})
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://smpalloc.example/")
set(CPACK_DEBIAN_LIB_PACKAGE_NAME ${SMP_DEB_LIB})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
# lintian asks for the ldconfig trigger; CPack's own postinst and postrm also call ldconfig (a
# lintian warning, harmless; replacing them by empty scripts is another warning).
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_SOURCE_DIR}/packaging/triggers)
set(CPACK_DEBIAN_LIB_DESCRIPTION "concurrent memory allocator for SMP machines
smpalloc is a malloc replacement with per-CPU caches (Linux rseq) over a
shared page heap, lock-free remote frees and memory returned when idle.
This package holds the shared libraries: libsmpalloc.so.0 replaces malloc
when preloaded or linked, libsmpalloc_api.so.0 gives only the smp_ API
(heaps, malloc types, statistics, RCU-deferred free).")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libsmpalloc-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${SMP_DEB_LIB} (= ${PROJECT_VERSION}-1)")
set(CPACK_DEBIAN_DEV_DESCRIPTION "concurrent memory allocator for SMP machines (development files)
smpalloc is a malloc replacement with per-CPU caches (Linux rseq) over a
shared page heap, lock-free remote frees and memory returned when idle.
This package holds the headers, static libraries, pkg-config and CMake
package files, and the manual pages smpalloc(3) and smpalloc(7).")
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME smpalloc-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${SMP_DEB_LIB} (= ${PROJECT_VERSION}-1), python3")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "concurrent memory allocator for SMP machines (command and benchmarks)
smpalloc is a malloc replacement with per-CPU caches (Linux rseq) over a
shared page heap, lock-free remote frees and memory returned when idle.
This package holds the smpalloc command (run a program on smpalloc,
compare it with other allocators), the benchmark workloads and the
kvserver example server.")
# Packages install under /usr, and the tree must have been configured for it: GNUInstallDirs
# picks the multiarch libdir from the prefix, and the command and kvserver carry paths. cpack
# stops with a message in a tree configured for another prefix (this file runs at cpack time).
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/CPackPrefixCheck.cmake
  "if(NOT \"${CMAKE_INSTALL_PREFIX}\" STREQUAL \"/usr\")
  message(FATAL_ERROR \"smpalloc: this tree is configured for ${CMAKE_INSTALL_PREFIX}; Debian \"
    \"packages need a tree configured with -DCMAKE_INSTALL_PREFIX=/usr (README, Installing)\")
endif()\n")
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_BINARY_DIR}/CPackPrefixCheck.cmake)
include(CPack)
