# msgpipeInstall.cmake - install rules (included by the root CMakeLists.txt
# when MSGPIPE_INSTALL is on, which it is by default for a top-level build).
#
#   cmake --install <build> [--prefix <dir>]
#
# installs (GNUInstallDirs):
#   include/msgpipe.h
#   lib/libmsgpipe.so.0.1.0, .so.0, .so         (Windows: bin/libmsgpipe.dll,
#                                                lib/libmsgpipe.dll.a)
#   lib/libmsgpipe_static.a                     (MSVC: msgpipe_static.lib)
#   lib/cmake/msgpipe/msgpipeConfig.cmake, ...ConfigVersion.cmake,
#                     msgpipeTargets*.cmake     find_package(msgpipe CONFIG)
#   lib/pkgconfig/msgpipe.pc, msgpipe-static.pc
#
# Components: "Runtime" (the shared library itself) and "Development"
# (everything else), e.g. cmake --install build --component Runtime.
include(CMakePackageConfigHelpers)

set(MSGPIPE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/msgpipe" CACHE STRING
    "Where to install msgpipe's CMake package files (relative to the prefix)")
set(MSGPIPE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig" CACHE STRING
    "Where to install msgpipe.pc and msgpipe-static.pc (relative to the prefix)")
mark_as_advanced(MSGPIPE_INSTALL_CMAKEDIR MSGPIPE_INSTALL_PKGCONFIGDIR)

if(MSGPIPE_BACKEND STREQUAL "win32")
  set(MSGPIPE_BACKEND_NAME "win32-pipe")
else()
  set(MSGPIPE_BACKEND_NAME "posix-${MSGPIPE_POSIX_TRANSPORT}")
endif()

# ---- Libraries and header ---------------------------------------------------
install(TARGETS msgpipe msgpipe_static
  EXPORT msgpipeTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime
          NAMELINK_COMPONENT Development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development)
install(FILES ${PROJECT_SOURCE_DIR}/api/msgpipe.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT Development)

# ---- CMake package ------------------------------------------------------------
# find_package(msgpipe CONFIG) -> msgpipe::msgpipe (shared) and
# msgpipe::msgpipe_static (static; carries MSGPIPE_STATIC and the system
# libraries it needs: Threads and, when built with it, OpenSSL::Crypto on
# POSIX; advapi32, bcrypt and ws2_32 on Windows).
install(EXPORT msgpipeTargets
  NAMESPACE msgpipe::
  DESTINATION ${MSGPIPE_INSTALL_CMAKEDIR} COMPONENT Development)
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/msgpipeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/msgpipeConfig.cmake
  INSTALL_DESTINATION ${MSGPIPE_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API (semantic versioning), so
# find_package(msgpipe 0.1) accepts 0.1.x only; from 1.0 on, the same
# major version.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_msgpipe_compat SameMinorVersion)
else()
  set(_msgpipe_compat SameMajorVersion)
endif()
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/msgpipeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${_msgpipe_compat})
install(FILES
  ${PROJECT_BINARY_DIR}/msgpipeConfig.cmake
  ${PROJECT_BINARY_DIR}/msgpipeConfigVersion.cmake
  DESTINATION ${MSGPIPE_INSTALL_CMAKEDIR} COMPONENT Development)

# ---- pkg-config ------------------------------------------------------------------
# The .pc files find the prefix relative to themselves (${pcfiledir}), so an
# installed tree can be moved, and `cmake --install --prefix` needs no
# reconfiguring.  An absolute libdir or includedir is used as it is.
if(IS_ABSOLUTE "${MSGPIPE_INSTALL_PKGCONFIGDIR}")
  set(MSGPIPE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _msgpipe_up "/root/${MSGPIPE_INSTALL_PKGCONFIGDIR}" "/root")
  string(REGEX REPLACE "/$" "" _msgpipe_up "${_msgpipe_up}")
  set(MSGPIPE_PC_PREFIX "\${pcfiledir}/${_msgpipe_up}")
endif()
foreach(_d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_d}}")
    set(MSGPIPE_PC_${_d} "${CMAKE_INSTALL_${_d}}")
  else()
    set(MSGPIPE_PC_${_d} "\${prefix}/${CMAKE_INSTALL_${_d}}")
  endif()
endforeach()
# What a program linking the static library needs besides it.
if(MSGPIPE_BACKEND STREQUAL "win32")
  set(MSGPIPE_PC_SYSLIBS "-ladvapi32 -lbcrypt -lws2_32")
else()
  # -pthread where the compiler wants it; nothing where threads live in libc
  # (glibc 2.34 and later).
  set(MSGPIPE_PC_SYSLIBS "${CMAKE_THREAD_LIBS_INIT}")
endif()
if(MSGPIPE_PC_SYSLIBS)
  set(MSGPIPE_PC_LIBS_PRIVATE "Libs.private: ${MSGPIPE_PC_SYSLIBS}")
  set(MSGPIPE_PC_SYSLIBS_SP " ${MSGPIPE_PC_SYSLIBS}")
else()
  set(MSGPIPE_PC_SYSLIBS_SP "")
  set(MSGPIPE_PC_LIBS_PRIVATE "")
endif()
# OpenSSL's libcrypto (authkey, posix/posix_crypto.c): a requirement of
# the static library, and a private one of the shared library.
if(MSGPIPE_WITH_OPENSSL)
  set(MSGPIPE_PC_REQUIRES "Requires: libcrypto")
  set(MSGPIPE_PC_REQUIRES_PRIVATE "Requires.private: libcrypto")
else()
  set(MSGPIPE_PC_REQUIRES "")
  set(MSGPIPE_PC_REQUIRES_PRIVATE "")
endif()
get_target_property(_msgpipe_static_name msgpipe_static OUTPUT_NAME)
if(NOT _msgpipe_static_name)
  set(_msgpipe_static_name msgpipe_static)
endif()
set(MSGPIPE_PC_STATIC_LIB "${_msgpipe_static_name}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/msgpipe.pc.in
               ${PROJECT_BINARY_DIR}/msgpipe.pc @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/msgpipe-static.pc.in
               ${PROJECT_BINARY_DIR}/msgpipe-static.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/msgpipe.pc ${PROJECT_BINARY_DIR}/msgpipe-static.pc
  DESTINATION ${MSGPIPE_INSTALL_PKGCONFIGDIR} COMPONENT Development)
