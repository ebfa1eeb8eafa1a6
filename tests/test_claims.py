"""Folder claims (repeatseg.files.claim_run_folder): kernel locks that a stopped holder keeps and a
killed one loses at once, mutual exclusion while holders come and go, the heartbeat fallback where
locks are local to each host, and how that is detected."""

import errno
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from repeatseg import files
from repeatseg.files import (
    FLOCK,
    HEARTBEAT,
    LOCK_ENV,
    OWNER_FILE,
    STALE_ENV,
    FolderClaimedError,
    claim_lock_mode,
    claim_run_folder,
    live_claims,
)

FORK = multiprocessing.get_context("fork")  # holders start at once; nothing is computed before the fork


def _hold(folder: Path, ready) -> None:
    with claim_run_folder(folder) as owner:
        ready.send(owner["lock"])
        time.sleep(600)


def _count(folder: Path, count: int, start) -> None:
    """Add one to a counter file under the claim, ``count`` times, retrying while others hold the folder."""
    start.wait()
    done = 0
    while done < count:
        try:
            with claim_run_folder(folder):
                path = folder / "counter"
                value = int(path.read_text()) if path.exists() else 0
                time.sleep(0.001)
                path.write_text(str(value + 1))
                done += 1
        except FolderClaimedError:
            time.sleep(0.001)


@contextmanager
def holding(folder: Path):
    """A process holding ``folder``'s claim until the block ends (then it is killed)."""
    ours, theirs = FORK.Pipe()
    process = FORK.Process(target=_hold, args=(folder, theirs), daemon=True)
    process.start()
    try:
        assert ours.poll(60) and ours.recv() in (FLOCK, HEARTBEAT)
        yield process
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.join()


def refused(folder: Path, pid: int) -> None:
    with pytest.raises(FolderClaimedError, match=f"pid {pid} on host {socket.gethostname()}"):
        with claim_run_folder(folder):
            pass


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture(autouse=True)
def _auto_mode(monkeypatch):
    monkeypatch.delenv(LOCK_ENV, raising=False)
    monkeypatch.delenv(STALE_ENV, raising=False)


def test_a_stopped_holder_keeps_its_folder_however_long_it_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv(STALE_ENV, "0.5")  # a heartbeat claim this silent would be taken over
    folder = tmp_path / "cell"
    with holding(folder) as holder:
        os.kill(holder.pid, signal.SIGSTOP)
        backdate(folder / OWNER_FILE, 86400)  # silent for a day, as far as its file shows
        time.sleep(1.0)
        refused(folder, holder.pid)
        assert [(c.folder, c.pid, c.lock) for c in live_claims(tmp_path)] == [(folder, holder.pid, FLOCK)]
        os.kill(holder.pid, signal.SIGCONT)  # it wakes up still holding it
        refused(folder, holder.pid)


def test_a_killed_holders_folder_is_free_at_once_whatever_its_owner_file_says(tmp_path):
    folder = tmp_path / "cell"
    with holding(folder) as holder:
        holder.kill()
        holder.join()
    owner = folder / OWNER_FILE
    assert owner.is_file() and live_claims(tmp_path) == []  # left behind, held by nobody
    # A record that a heartbeat claim would honour: another host, just written.
    owner.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": time.time(), "token": "t", "lock": FLOCK}))
    with claim_run_folder(folder) as mine:
        assert json.loads(owner.read_text()) == mine and mine["pid"] == os.getpid()
    assert not owner.exists()


def test_claims_exclude_each_other_while_holders_come_and_go(tmp_path):
    folder, workers, count, start = tmp_path / "shared", 3, 40, FORK.Event()
    processes = [FORK.Process(target=_count, args=(folder, count, start)) for _ in range(workers)]
    for process in processes:
        process.start()
    start.set()  # all at once
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * workers
    assert int((folder / "counter").read_text()) == workers * count  # no increment lost to a second holder
    assert not (folder / OWNER_FILE).exists()


def test_a_folder_this_process_holds_is_refused_and_released_at_the_end(tmp_path):
    folder = tmp_path / "new" / "cell"
    with claim_run_folder(folder) as owner:
        assert owner["lock"] == FLOCK and (folder / OWNER_FILE).is_file()
        with pytest.raises(FolderClaimedError, match=f"pid {os.getpid()}.*this process"):
            with claim_run_folder(folder):
                pass
        assert [(c.folder, c.pid) for c in live_claims(tmp_path)] == [(folder, os.getpid())]
    assert not folder.exists()  # created by the claim, left empty: removed
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        (tmp_path / "file").write_text("x")
        with claim_run_folder(tmp_path / "file"):
            pass


def test_a_file_system_that_refuses_flock_gets_heartbeat_claims(tmp_path, monkeypatch):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")  # NFSv3 without lockd, say

    monkeypatch.setattr(files.fcntl, "flock", no_locks)
    folder = tmp_path / "cell"
    with claim_run_folder(folder) as owner:
        assert owner["lock"] == HEARTBEAT and "No locks available" in owner["lock_reason"]
        assert json.loads((folder / OWNER_FILE).read_text())["lock"] == HEARTBEAT
    assert not folder.exists()


def test_heartbeat_claims_go_stale_when_dead_or_silent(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, HEARTBEAT)
    folder = tmp_path / "cell"
    folder.mkdir()
    owner = folder / OWNER_FILE
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": 0, "token": "a"}))
    with claim_run_folder(folder):  # its pid is dead on this host: taken at once
        assert json.loads(owner.read_text())["pid"] == os.getpid()
    assert not owner.exists()
    owner.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": time.time(), "token": "b"}))
    with pytest.raises(FolderClaimedError, match="host elsewhere.*last heartbeat"):  # another host, fresh
        with claim_run_folder(folder, stale_after=60):
            pass
    backdate(owner, 120)
    with claim_run_folder(folder, stale_after=60):  # silent for longer than the window
        assert json.loads(owner.read_text())["host"] == socket.gethostname()


def test_where_locks_are_local_a_stopped_holder_loses_its_folder_after_the_window(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, HEARTBEAT)
    monkeypatch.setenv(STALE_ENV, "1")  # inherited by the holder: it beats every 0.1 s
    folder = tmp_path / "cell"
    with holding(folder) as holder:
        assert [c.lock for c in live_claims(tmp_path)] == [HEARTBEAT]
        os.kill(holder.pid, signal.SIGSTOP)
        refused(folder, holder.pid)  # fresh yet
        deadline = time.monotonic() + 30
        while True:
            try:
                with claim_run_folder(folder) as mine:
                    assert mine["lock"] == HEARTBEAT
                break
            except FolderClaimedError:
                assert time.monotonic() < deadline
                time.sleep(0.2)


MOUNTINFO = r"""27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /shared rw,relatime - nfs4 server:/export rw,vers=4.2,local_lock=none,addr=10.0.0.1
41 40 0:51 / /shared/scratch rw,relatime - nfs server:/scratch rw,vers=3,local_lock=all,addr=10.0.0.2
42 27 0:52 / /lustre rw - lustre 10.0.0.3@tcp:/fs rw,localflock
43 27 0:53 / /beegfs rw - beegfs beegfs_nodev rw,cfgFile=/etc/beegfs/beegfs-client.conf
44 27 0:54 / /my\040data rw - fuse.sshfs me@host:/data rw,user_id=0
45 27 0:55 / /gpfs rw - gpfs gpfs0 rw
"""


@pytest.mark.parametrize("folder, mode, says", [
    ("/home/me/runs", FLOCK, "ext4"),
    ("/shared/studies/t3", FLOCK, "nfs4"),                 # NFSv4 locks are the server's: every client sees them
    ("/shared/scratch/t3", HEARTBEAT, "local_lock=all"),  # the deeper mount wins
    ("/lustre/t3", HEARTBEAT, "localflock"),
    ("/beegfs/t3", HEARTBEAT, "tuneUseGlobalFileLocks"),
    ("/my data/t3", HEARTBEAT, "sshfs"),                  # mountinfo escapes the space
    ("/gpfs/t3", FLOCK, "gpfs"),
])
def test_file_systems_whose_locks_are_local_to_each_host_are_found_in_the_mount_table(folder, mode, says):
    found, why = claim_lock_mode(folder, MOUNTINFO)
    assert found == mode and says in why


def test_the_lock_mode_and_window_can_be_set_and_bad_values_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, "heartbeat")
    assert claim_lock_mode("/shared/studies/t3", MOUNTINFO)[0] == HEARTBEAT
    monkeypatch.setenv(LOCK_ENV, "flock")
    assert claim_lock_mode("/shared/scratch/t3", MOUNTINFO)[0] == FLOCK  # e.g. a site that knows better
    monkeypatch.setenv(LOCK_ENV, "fcntl")
    with pytest.raises(ValueError, match=LOCK_ENV):
        with claim_run_folder(tmp_path / "cell"):
            pass
    monkeypatch.setenv(LOCK_ENV, "heartbeat")
    for bad in ("-1", "soon", "inf"):
        monkeypatch.setenv(STALE_ENV, bad)
        with pytest.raises(ValueError, match=STALE_ENV):
            with claim_run_folder(tmp_path / "cell"):
                pass
    assert not (tmp_path / "cell").exists()
