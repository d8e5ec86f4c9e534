"""glibc's huge pages for XLA:CPU's buffers (`jaxcycle.hugepages`): the environment it
builds, the one restart of the `jaxcycle` command, the bench's children, and the kernel's
answer (page faults of a fresh malloc'd block, with and without the tunable)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxcycle import cli, hugepages
from jaxcycle.hugepages import SETTING, with_huge_pages

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="glibc's tunables: Linux")


def test_tunable_added_to_an_environment_without_one():
    env = {"PATH": "/bin"}
    assert with_huge_pages(env) == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert env == {"PATH": "/bin"}  # the argument is left as it was


def test_tunable_appended_to_the_users_other_tunables():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"}
    assert with_huge_pages(env)["GLIBC_TUNABLES"] == (
        "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1"
    )


@pytest.mark.parametrize(
    "env",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},  # the user's own choice, kept
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"},
        {"JAXCYCLE_HUGE_PAGES": "0"},
        {"JAXCYCLE_HUGE_PAGES": "0", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
    ],
)
def test_environment_left_alone_where_set_or_opted_out(env):
    assert with_huge_pages(env) == env


_RESTARTING = """
import os, sys
from jaxcycle.hugepages import restart_with_huge_pages
with open(sys.argv[1], "a") as log:  # one line per start of this script
    log.write(f"start {sys.argv[2]}\\n")
restart_with_huge_pages()
print(os.environ.get("GLIBC_TUNABLES"))
"""


@linux_only
@pytest.mark.parametrize(
    "extra, starts, tunables",
    [
        ({}, 2, SETTING),  # restarted once, with the tunable, with the same arguments
        ({"GLIBC_TUNABLES": SETTING}, 1, SETTING),  # already set: goes on at once
        ({"JAXCYCLE_HUGE_PAGES": "0"}, 1, "None"),
    ],
)
def test_restart_runs_the_same_command_once_with_the_tunable(tmp_path, extra, starts, tunables):
    script, log = tmp_path / "restarting.py", tmp_path / "starts.log"
    script.write_text(_RESTARTING)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.pop("JAXCYCLE_HUGE_PAGES", None)
    done = subprocess.run(
        [sys.executable, str(script), str(log), "argument"],
        env={**env, **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == tunables
    assert log.read_text().splitlines() == ["start argument"] * starts


@linux_only
def test_restart_refused_by_the_system_lets_the_command_run_on(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("JAXCYCLE_HUGE_PAGES", raising=False)
    tried = []

    def refused(*args):
        tried.append(args[0])
        raise PermissionError("exec refused")

    monkeypatch.setattr(os, "execve", refused)
    assert hugepages.restart_with_huge_pages() is None
    assert tried == [sys.executable]
    monkeypatch.setattr(sys, "executable", "")  # an embedded interpreter: nothing to exec
    assert hugepages.restart_with_huge_pages() is None
    assert len(tried) == 1  # not tried again


def test_console_script_restarts_then_runs_the_command(monkeypatch):
    """`jaxcycle` (the console script, `python -m jaxcycle.cli`) restarts before parsing;
    `main(argv)`, as programs and tests call it, does not."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["jaxcycle"] == "jaxcycle.cli:command"
    calls = []
    monkeypatch.setattr(hugepages, "restart_with_huge_pages", lambda: calls.append("restart"))
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 0)
    assert cli.command() == 0
    assert calls == ["restart", "main"]


def test_main_with_arguments_does_not_restart(monkeypatch):
    calls = []
    monkeypatch.setattr(hugepages, "restart_with_huge_pages", lambda: calls.append("restart"))
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == []


def test_bench_children_measure_both_frameworks_with_the_tunable(monkeypatch):
    from benchmarks.run import child_env, machine

    monkeypatch.delenv("JAXCYCLE_HUGE_PAGES", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert child_env()["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{SETTING}"
    assert machine()["glibc_tunables"] == f"glibc.malloc.arena_max=2:{SETTING}"
    monkeypatch.setenv("JAXCYCLE_HUGE_PAGES", "0")
    assert child_env()["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"


_FAULTS = """
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
size = 256 << 20
block = libc.malloc(size)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(block, 1, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _thp_mode() -> str | None:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


@linux_only
@pytest.mark.skipif(
    _thp_mode() not in ("madvise", "always"), reason="the kernel's transparent huge pages are off"
)
def test_a_fresh_block_faults_in_by_huge_pages_with_the_tunable():
    """Touching a fresh 256 MiB malloc'd block: one fault per 4 KiB page (65,536) without
    huge pages, one per 2 MiB page (128, and a few others) with them."""

    def faults(env: dict[str, str]) -> int:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_FAULTS)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout)

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert faults({**plain, "GLIBC_TUNABLES": SETTING}) < 2_000
    if _thp_mode() == "madvise":  # without the tunable nobody asks for huge pages
        assert faults(plain) > 60_000
