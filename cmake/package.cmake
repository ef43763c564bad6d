# The Debian package: `cpack -G DEB` in the build directory (scripts/package).
# What it installs besides the binary (install(TARGETS midflight) in
# CMakeLists.txt): the systemd unit, the man page, bash completion, a
# commented settings file for the unit (a conffile, mode 0600). Its Depends
# are what dpkg-shlibdeps finds the binary linked against (libpq5,
# libmariadb3, libssl3, librdkafka1, libcurl4, ...) plus the programs it runs
# or its scripts use: pg_dump and pg_restore (postgresql-client), adduser.

find_program(GZIP gzip REQUIRED)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/midflight.1.gz
  COMMAND ${GZIP} -9 -n -c ${CMAKE_SOURCE_DIR}/packaging/midflight.1 > ${CMAKE_BINARY_DIR}/midflight.1.gz
  DEPENDS ${CMAKE_SOURCE_DIR}/packaging/midflight.1)
add_custom_target(midflight_man ALL DEPENDS ${CMAKE_BINARY_DIR}/midflight.1.gz)

install(FILES packaging/midflight.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_BINARY_DIR}/midflight.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES packaging/midflight.bash-completion DESTINATION share/bash-completion/completions RENAME midflight)
install(FILES packaging/midflight.env DESTINATION /etc/midflight PERMISSIONS OWNER_READ OWNER_WRITE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME midflight)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "midflight maintainers <midflight@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "move live PostgreSQL and MySQL/MariaDB databases with zero downtime")
set(CPACK_PACKAGE_DESCRIPTION "midflight copies a database to another server while its applications keep
working: a snapshot copy, change streaming, a wire-protocol proxy with staged
read and write switches, live verification, reverse replication and rollback.
`midflight serve` runs as a systemd service (midflight.service).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "postgresql-client, adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
  ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
  ${CMAKE_SOURCE_DIR}/packaging/debian/postrm
  ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
