# Sanitizer builds, each in a tree of its own:
# - LOOM_SANITIZE (GCC): AddressSanitizer + UndefinedBehaviorSanitizer on every target; the unit,
#   cli and dist tests run in it (`make test-asan`).
# - LOOM_FUZZ (clang): the same sanitizers plus libFuzzer's coverage instrumentation; builds the
#   library and the targets in fuzz/ only (`make fuzz`).
# Undefined behaviour aborts instead of printing and going on. Every executable carries the
# runtime options of sanitize/options.cpp, so tests, the `loom` binary and ranks that mpirun
# starts behave the same with no environment set.
if(NOT (LOOM_SANITIZE OR LOOM_FUZZ))
  return()
endif()
set(LOOM_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
foreach(flag IN LISTS LOOM_SANITIZER_FLAGS ITEMS -g1)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:${flag}>)
endforeach()
add_link_options(${LOOM_SANITIZER_FLAGS})
set(CMAKE_CXX_FLAGS_RELEASE "-O2")
# Third-party: toml++ 3.3 (Debian 12) reaches __builtin_unreachable() while telling whether some
# non-ASCII characters (U+00A1-U+0499, U+FB26-U+FEFE) are whitespace, on bad and even on valid
# TOML (marzer/tomlplusplus#295 and #190, fixed upstream by PR #305). GCC 12 and clang 14 compile
# it to the right answer for every code point (checked U+00A0-U+FEFF), so the check is off for
# the one file that includes toml++.
set_source_files_properties(${CMAKE_SOURCE_DIR}/loom/train/config.cpp PROPERTIES COMPILE_OPTIONS -fno-sanitize=unreachable)
if(LOOM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "LOOM_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  # clang reports the `omp simd` loops it does not vectorise under the sanitizers: noise here.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link> $<$<COMPILE_LANGUAGE:CXX>:-Wno-pass-failed>)
endif()
