// Runtime options compiled into every executable of a sanitizer build (the runtimes look these
// functions up at start-up; an environment variable such as ASAN_OPTIONS still overrides them).
extern "C" {

// Third-party libraries have no frame pointers: the fast unwinder would stop inside them, and
// the leak suppressions could not see which library an allocation came from.
// intercept_tls_get_addr=0: up to GCC 13 (LLVM 16) the runtime's __tls_get_addr interceptor
// takes a dynamic TLS block whose address is 16 past a page boundary for glibc 2.19's header and
// reads its start and size from the two words before it; since glibc 2.25 there is no header,
// and a block that lands there by chance (OpenMPI's dlopen'd components hold dynamic TLS) makes
// the leak check's stop-the-world tracer read garbage and die at exit ("Tracer caught signal
// 11", every rank of an 8-rank pipeline test in CI). Loom's own thread-locals are static TLS,
// which the leak check still scans.
const char* __asan_default_options() { return "fast_unwind_on_malloc=0:intercept_tls_get_addr=0"; }

// UB reports come with a stack trace.
const char* __ubsan_default_options() { return "print_stacktrace=1"; }

// Leaks inside third-party libraries are suppressed by the committed list beside this file.
const char* __lsan_default_options() { return "suppressions=" LOOM_LSAN_SUPPRESSIONS ":print_suppressions=0"; }

}
