"""Transparent huge pages for XLA:CPU's buffers, through glibc's malloc.

XLA:CPU allocates a program's temporary buffer afresh for each run (one block of up to several
GiB for the train step: `XLA MiB` in `jaxcycle bench`'s table), and glibc serves a block that
large from a fresh `mmap` and gives it back with `munmap`: every step faults the whole block in
again, 4 KiB at a time. Measured on the 2-core CPU (AMD EPYC, jax 0.10.2), train step at
256x256, batch 1: 575,000 page faults and 2.2 s of kernel time per step. With glibc's
`glibc.malloc.hugetlb=1` tunable, malloc asks the kernel for transparent huge pages
(`madvise`) on such blocks: about 1,300 faults and 0.4 s per step, and the step 15% faster
(medians 11.8 -> 10.0 s; PyTorch's eager iteration, given the same tunable, 13.1 -> 12.8 s in
the first round; `benchmarks/results/cpu_formulations.md`, "Page faults").

glibc reads its tunables when a process starts, so the `jaxcycle` command, started from the
command line, executes itself again once with the tunable in its environment
(`restart_with_huge_pages`); `jaxcycle bench` measures both frameworks in that environment.
`JAXCYCLE_HUGE_PAGES=0` leaves the environment as it is. Where the kernel's transparent huge
pages are off (`/sys/kernel/mm/transparent_hugepage/enabled`: never), or with another C
library, the tunable changes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
SETTING = f"{TUNABLE}=1"
OPT_OUT = "JAXCYCLE_HUGE_PAGES"


def with_huge_pages(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` whose GLIBC_TUNABLES asks for huge pages: `glibc.malloc.hugetlb=1`
    appended to the tunables already there. Unchanged where GLIBC_TUNABLES already sets
    glibc.malloc.hugetlb (to any value: the user's choice), or where JAXCYCLE_HUGE_PAGES=0."""
    env = dict(env)
    if env.get(OPT_OUT, "1").strip() == "0":
        return env
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if any(t.split("=", 1)[0] == TUNABLE for t in tunables):
        return env
    env["GLIBC_TUNABLES"] = ":".join([*tunables, SETTING])
    return env


def restart_with_huge_pages() -> None:
    """On Linux, executes this process's command line again (`sys.orig_argv`, same interpreter)
    in `with_huge_pages(os.environ)` when that differs from the current environment; there the
    tunable is set, so the new process goes on. Returns without doing anything otherwise, or
    where the interpreter cannot be executed again (no `sys.executable`, or exec refused): the
    command then runs as it is, without huge pages."""
    if sys.platform != "linux" or not sys.executable:
        return
    env = with_huge_pages(os.environ)
    if env == dict(os.environ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return
