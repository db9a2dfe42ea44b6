# msgpipe-check-exports.cmake - the shared library exports msgpipe.h's
# functions and nothing else.
#
#   cmake -DLIBRARY=<libmsgpipe.so|.dll|.dylib> -DHEADER=<api/msgpipe.h>
#         -DFORMAT=elf|pe|macho -DTOOL=<nm (elf, macho) or objdump (pe)>
#         [-DREADELF=<readelf> -DSONAME=<expected, e.g. libmsgpipe.so.0>]
#         -P msgpipe-check-exports.cmake
#
# The list of public functions comes from the header itself: every
# declaration that starts with MSGPIPE_EXTERN.  The test fails when the
# library exports a symbol that is not one of them (an internal function
# that escaped hidden visibility, a variable, a symbol not named msgpipe_*),
# or lacks one of them (a declaration without its definition, or a
# definition that lost MSGPIPE_EXTERN).  For ELF it also checks the SONAME.
# Registered with ctest as msgpipe_exported_symbols (root CMakeLists.txt).

cmake_minimum_required(VERSION 3.16)

foreach(_v LIBRARY HEADER FORMAT TOOL)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "msgpipe-check-exports: ${_v} is not set")
  endif()
endforeach()

# ---- What the header declares ----------------------------------------------
file(READ "${HEADER}" _hdr)
# "MSGPIPE_EXTERN const char *msgpipe_strerror(int err);" -> msgpipe_strerror
string(REGEX MATCHALL "MSGPIPE_EXTERN[^;(#]*[ *](msgpipe_[A-Za-z0-9_]+)[ \t]*\\("
       _decls "${_hdr}")
set(_public)
foreach(_d IN LISTS _decls)
  string(REGEX REPLACE ".*[ *](msgpipe_[A-Za-z0-9_]+)[ \t]*\\($" "\\1" _name "${_d}")
  list(APPEND _public ${_name})
endforeach()
list(REMOVE_DUPLICATES _public)
list(SORT _public)
list(LENGTH _public _npublic)
if(_npublic LESS 10)
  message(FATAL_ERROR "msgpipe-check-exports: found only ${_npublic} "
          "MSGPIPE_EXTERN declarations in ${HEADER}: the pattern is stale")
endif()

# ---- What the library exports ----------------------------------------------
if(FORMAT STREQUAL "elf")
  set(_cmd "${TOOL}" -D --defined-only "${LIBRARY}")
elseif(FORMAT STREQUAL "macho")
  set(_cmd "${TOOL}" -g -U "${LIBRARY}")
elseif(FORMAT STREQUAL "pe")
  set(_cmd "${TOOL}" -p "${LIBRARY}")
else()
  message(FATAL_ERROR "msgpipe-check-exports: FORMAT must be elf, macho or pe")
endif()
execute_process(COMMAND ${_cmd} OUTPUT_VARIABLE _out ERROR_VARIABLE _err
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "msgpipe-check-exports: '${_cmd}' failed (${_rc}): ${_err}")
endif()

string(REPLACE ";" "\\;" _out "${_out}")
string(REPLACE "\n" ";" _lines "${_out}")
set(_exported)
if(FORMAT STREQUAL "pe")
  # The names follow the line "[Ordinal/Name Pointer] Table" until a blank
  # line: "\t[   0] msgpipe_accept".
  set(_in_table FALSE)
  foreach(_l IN LISTS _lines)
    if(_l MATCHES "^\\[Ordinal/Name Pointer\\] Table")
      set(_in_table TRUE)
    elseif(_in_table)
      if(_l MATCHES "^[ \t]*$")
        break()
      elseif(_l MATCHES "^[ \t]*\\[[ 0-9]+\\][ \t]+([^ \t]+)")
        list(APPEND _exported "${CMAKE_MATCH_1}")
      endif()
    endif()
  endforeach()
else()
  # nm: "0000000000002410 T msgpipe_backend" (weak and versioned symbols
  # included; undefined ones were left out by the options).
  foreach(_l IN LISTS _lines)
    if(_l MATCHES "^[0-9a-fA-F]* *[A-Za-z] ([^ ]+)$")
      set(_s "${CMAKE_MATCH_1}")
      if(FORMAT STREQUAL "macho")
        string(REGEX REPLACE "^_" "" _s "${_s}")
      endif()
      list(APPEND _exported "${_s}")
    endif()
  endforeach()
endif()
list(REMOVE_DUPLICATES _exported)
list(SORT _exported)

# ---- Compare ----------------------------------------------------------------
set(_bad)
set(_extra)
foreach(_s IN LISTS _exported)
  if(NOT _s MATCHES "^msgpipe_[a-z0-9]" )
    list(APPEND _bad "${_s}")
  elseif(NOT _s IN_LIST _public)
    list(APPEND _extra "${_s}")
  endif()
endforeach()
set(_missing)
foreach(_s IN LISTS _public)
  if(NOT _s IN_LIST _exported)
    list(APPEND _missing "${_s}")
  endif()
endforeach()

list(LENGTH _exported _nexported)
message(STATUS "${LIBRARY}: ${_nexported} exported symbols, "
        "${_npublic} functions declared MSGPIPE_EXTERN in msgpipe.h")
set(_fail FALSE)
if(_bad)
  string(REPLACE ";" " " _t "${_bad}")
  message(SEND_ERROR "exported but not a public name (msgpipe_*, not msgpipe__*): ${_t}")
  set(_fail TRUE)
endif()
if(_extra)
  string(REPLACE ";" " " _t "${_extra}")
  message(SEND_ERROR "exported but not declared MSGPIPE_EXTERN in msgpipe.h "
          "(internal? give it hidden visibility or a msgpipe__ name and no "
          "MSGPIPE_EXTERN): ${_t}")
  set(_fail TRUE)
endif()
if(_missing)
  string(REPLACE ";" " " _t "${_missing}")
  message(SEND_ERROR "declared MSGPIPE_EXTERN in msgpipe.h but not exported: ${_t}")
  set(_fail TRUE)
endif()

# ---- SONAME (ELF) -------------------------------------------------------------
if(FORMAT STREQUAL "elf" AND DEFINED SONAME AND NOT SONAME STREQUAL "")
  if(NOT READELF)
    message(FATAL_ERROR "msgpipe-check-exports: READELF is not set")
  endif()
  execute_process(COMMAND "${READELF}" -d "${LIBRARY}" OUTPUT_VARIABLE _dyn
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0 OR NOT _dyn MATCHES "\\(SONAME\\)[^[]*\\[([^]]+)\\]")
    message(SEND_ERROR "${LIBRARY} has no SONAME")
    set(_fail TRUE)
  elseif(NOT CMAKE_MATCH_1 STREQUAL SONAME)
    message(SEND_ERROR "SONAME is ${CMAKE_MATCH_1}, expected ${SONAME}")
    set(_fail TRUE)
  else()
    message(STATUS "SONAME ${CMAKE_MATCH_1}")
  endif()
endif()

if(_fail)
  message(FATAL_ERROR "msgpipe-check-exports: the library's exports are wrong")
endif()
string(REPLACE ";" " " _t "${_exported}")
message(STATUS "exported: ${_t}")
