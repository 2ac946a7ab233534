// Runtime options compiled into every executable of a sanitizer build (the runtimes look these
// functions up at start-up; an environment variable such as ASAN_OPTIONS still overrides them).
extern "C" {

// Third-party libraries have no frame pointers: the fast unwinder would stop inside them, and
// the leak suppressions could not see which library an allocation came from.
const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

// UB reports come with a stack trace.
const char* __ubsan_default_options() { return "print_stacktrace=1"; }

// Leaks inside third-party libraries are suppressed by the committed list beside this file.
const char* __lsan_default_options() { return "suppressions=" LOOM_LSAN_SUPPRESSIONS ":print_suppressions=0"; }

}
