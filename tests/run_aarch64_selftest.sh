#!/bin/sh
# Cross-compiles the C runtime's kernel self-test (tests/kernel_selftest.c) for aarch64 and
# runs it under qemu-user: the NEON build of the kernels, tested on any machine.
#   needs (Debian): apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   usage: tests/run_aarch64_selftest.sh        (from the repository's root or anywhere)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -fwrapv -pthread -Wall -Werror \
    -I "$root/c_runtime" "$root/tests/kernel_selftest.c" "$root"/c_runtime/*.c -o "$out/selftest" -lm
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/selftest"
