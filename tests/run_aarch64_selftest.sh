#!/bin/sh
# Cross-compiles the C runtime's self-tests (tests/kernel_selftest.c, tests/pool_selftest.c)
# for aarch64 and runs them under qemu-user: the NEON build of the kernels and the thread
# pool on Arm's memory model, tested on any machine.
#   needs (Debian): apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   usage: tests/run_aarch64_selftest.sh        (from the repository's root or anywhere)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for test in kernel_selftest pool_selftest; do
    aarch64-linux-gnu-gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -fwrapv -pthread -Wall -Werror \
        -I "$root/c_runtime" "$root/tests/$test.c" "$root"/c_runtime/*.c -o "$out/$test" -lm
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/$test"
done
