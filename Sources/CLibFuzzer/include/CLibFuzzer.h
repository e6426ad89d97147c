#ifndef SIGIL_CLIBFUZZER_H
#define SIGIL_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry point for programs with their own main (in libclang_rt.fuzzer*). In a fuzz build
/// (`scripts/fuzz`: -sanitize=fuzzer, -DSIGIL_LIBFUZZER) it is libFuzzer's; in a normal build driver.c
/// supplies a replay driver that runs each file named on the command line once, so the same binary
/// replays the committed corpus and crash regressions without libFuzzer.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
