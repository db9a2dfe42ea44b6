# CMake toolchain file: cross-compile for 64-bit Windows with Debian's
# gcc-mingw-w64-x86-64 and run the results (try_run, ctest) under Wine.
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake \
#         -DCMOCKA_ROOT="$(scripts/win-deps.sh)"
#
# Cache/env knobs:
#   CMOCKA_ROOT         prefix holding include/cmocka.h + lib/libcmocka-static.a
#                       (also accepted: CMAKE_PREFIX_PATH, env CMOCKA_ROOT)
#   MINGW_TRIPLE        default x86_64-w64-mingw32
#   MINGW_THREAD_MODEL  win32 (default, Debian's default alternative) or posix
#   WINE                wine launcher (default: first of wine, wine64,
#                       /usr/lib/wine/wine64)
#   env WINEDEBUG / WINEPREFIX / WINEDLLOVERRIDES at configure time are baked
#   into the emulator command; WINEDEBUG defaults to -all (quiet).

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(MINGW_TRIPLE "x86_64-w64-mingw32" CACHE STRING "mingw-w64 target triple")
set(MINGW_THREAD_MODEL "win32" CACHE STRING "mingw-w64 gcc variant: win32 or posix")

# Prefer the explicitly versioned variant so the result does not depend on
# update-alternatives; fall back to the plain names.
find_program(CMAKE_C_COMPILER NAMES ${MINGW_TRIPLE}-gcc-${MINGW_THREAD_MODEL} ${MINGW_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_CXX_COMPILER NAMES ${MINGW_TRIPLE}-g++-${MINGW_THREAD_MODEL} ${MINGW_TRIPLE}-g++)
find_program(CMAKE_RC_COMPILER NAMES ${MINGW_TRIPLE}-windres windres)
find_program(CMAKE_AR NAMES ${MINGW_TRIPLE}-gcc-ar ${MINGW_TRIPLE}-ar)
find_program(CMAKE_RANLIB NAMES ${MINGW_TRIPLE}-gcc-ranlib ${MINGW_TRIPLE}-ranlib)

# No runtime DLLs needed under Wine: static libgcc, and -static so that
# winpthread (posix variant) is linked statically too. System DLLs
# (kernel32, msvcrt, ws2_32, ...) are still linked dynamically, as always.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc -static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc")

# Where find_path / find_library look: the mingw sysroot plus the cross
# cmocka prefix. Programs come from the host, libraries/headers only from the
# roots.
if(NOT DEFINED CMOCKA_ROOT AND DEFINED ENV{CMOCKA_ROOT})
    set(CMOCKA_ROOT "$ENV{CMOCKA_ROOT}")
endif()
set(CMAKE_FIND_ROOT_PATH /usr/${MINGW_TRIPLE})
if(DEFINED CMOCKA_ROOT)
    list(APPEND CMAKE_FIND_ROOT_PATH "${CMOCKA_ROOT}")
endif()
if(DEFINED CMAKE_PREFIX_PATH)
    list(APPEND CMAKE_FIND_ROOT_PATH ${CMAKE_PREFIX_PATH})
endif()
list(REMOVE_DUPLICATES CMAKE_FIND_ROOT_PATH)
# Forward to try_compile projects.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CMOCKA_ROOT MINGW_TRIPLE MINGW_THREAD_MODEL)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Run target executables (ctest, try_run) under Wine.
if(NOT WINE)
    find_program(WINE NAMES wine wine64 PATHS /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
endif()
if(WINE)
    if(DEFINED ENV{WINEDEBUG})
        set(_msgpipe_wine_env "WINEDEBUG=$ENV{WINEDEBUG}")
    else()
        set(_msgpipe_wine_env "WINEDEBUG=-all")
    endif()
    if(DEFINED ENV{WINEPREFIX})
        list(APPEND _msgpipe_wine_env "WINEPREFIX=$ENV{WINEPREFIX}")
    endif()
    if(DEFINED ENV{WINEDLLOVERRIDES})
        list(APPEND _msgpipe_wine_env "WINEDLLOVERRIDES=$ENV{WINEDLLOVERRIDES}")
    else()
        list(APPEND _msgpipe_wine_env "WINEDLLOVERRIDES=mscoree,mshtml=")
    endif()
    set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/env ${_msgpipe_wine_env} ${WINE})
    unset(_msgpipe_wine_env)
else()
    message(WARNING "mingw-w64.cmake: wine not found; cross-built tests cannot run")
endif()
