"""A store is never harmed by reading, never resumed wrongly, never left unusable.

1. Reading writes nothing: no lock file, no metadata, no zarr consolidation;
   a store on read-only media opens for reading, analysis and export.
2. A store whose plan no longer gives its recorded points (edited by hand) is
   refused by ``resume`` before anything on the rig moves.
3. A damaged store (an array or chunk missing, a chunk truncated or garbled)
   is refused the same way, naming what is damaged, and stays readable.
4. A creation killed at any instant leaves nothing, a complete store, or a
   store recognized as caught mid-creation that ``overwrite`` replaces.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage._local as zarr_local
from _scan_helpers import (
    FrameCounter,
    assert_done_points_intact,
    close_core,
    loaded_core,
    rig_state,
    small_plan,
    tree_snapshot,
)

from napari_seccm.acquisition import store as store_mod
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import (
    CREATING_MARKER,
    ScanStore,
    StoreDamagedError,
    StoreExistsError,
    StoreIncompleteError,
    StoreLockedError,
)
from napari_seccm.configs import load_core

N_POINTS = 16  # small_plan(width_um=2.0): 4 x 4 points at 0.5 um
N_DONE = 6  # the interrupted scan measured these before it was canceled
MID_CREATION = r"caught mid-creation.*no point was measured.*--overwrite"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A real scan canceled after N_DONE of its N_POINTS points (made once)."""
    path = tmp_path_factory.mktemp("safety") / "interrupted.seccm.zarr"
    core = load_core(signals="psygnal")
    try:
        scan = Scan.create(core, small_plan(width_um=2.0), path)
        counter = FrameCounter(core, at=N_DONE, action=scan.cancel)
        assert scan.run(handle_signals=False) == "canceled"
        counter.disconnect()
    finally:
        close_core(core)
        del core
        gc.collect()
    return path


@pytest.fixture(scope="module")
def core(interrupted):
    """One simulated rig for the module (after the scan above released its own)."""
    yield from loaded_core()


@pytest.fixture
def copy(interrupted, tmp_path):
    """A private copy of the interrupted scan, to edit or damage."""
    dst = tmp_path / "copy.seccm.zarr"
    shutil.copytree(interrupted, dst)
    return dst


def full_snapshot(path: Path) -> dict[str, tuple]:
    """Every file and folder of a tree (the lock file too): type, size,
    modification time and bytes. Reading changes none of them."""
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        data = p.read_bytes() if p.is_file() else None
        out[p.relative_to(path).as_posix()] = (
            stat.S_IFMT(st.st_mode),
            st.st_size,
            st.st_mtime_ns,
            data,
        )
    return out


def set_meta(path: Path, **changes) -> None:
    """Edit the store's metadata by hand, as a user with a text editor would."""
    zj = path / "zarr.json"
    node = json.loads(zj.read_text())
    node["attributes"]["seccm"].update(changes)
    zj.write_text(json.dumps(node))


def read_everything(path: Path, out_dir: Path) -> dict:
    """What a user does with a store they only look at: info, maps, traces,
    analysis and export (the exports written outside the store)."""
    from napari_seccm.analysis import maps as amaps
    from napari_seccm.cli import store_info

    info = store_info(path)
    with ScanStore.open(path) as s:
        facts = {
            "status": s.status,
            "counts": s.status_counts(),
            "done": int(s.done_mask().sum()),
            "locked": s.is_locked_by_other(),
            "problems": s.problems(),
            "time": s.instrument_time_s(),
        }
        s.results(), s.points(), s.current_map(), s.height_map(), s.trace(0), s.alignments()
        s.plan()
    amaps.point_quality(path)
    amaps.measured_positions(path)
    from napari_seccm.analysis.export import write_traces_csv

    write_traces_csv(path, out_dir / f"traces-{uuid.uuid4().hex[:6]}.csv")
    return {**facts, "info_status": info["status"], "info_done": info["points_done"]}


# ------------------------------------------------------- 1. reading writes nothing
@pytest.mark.parametrize("lock_file", [True, False], ids=["with-lock-file", "without-lock-file"])
@pytest.mark.parametrize("status", ["canceled", "running"])
def test_reading_writes_nothing(copy, tmp_path, status, lock_file):
    """No lock file appears, nothing is modified, also for a scan left
    ``running`` (whose writer the reader looks for) and for a store copied
    without its hidden lock file."""
    set_meta(copy, status=status)
    if not lock_file:
        (copy / ".lock").unlink()
    before = full_snapshot(copy)
    facts = read_everything(copy, tmp_path)
    assert full_snapshot(copy) == before
    assert (
        facts["status"]
        == facts["info_status"]
        == ("interrupted" if status == "running" else status)
    )
    assert facts["done"] == facts["info_done"] == N_DONE
    assert facts["problems"] == []
    assert not facts["locked"]


def test_a_reader_still_sees_a_live_writer(copy):
    with ScanStore.open(copy, mode="r+") as writer:
        writer.update_meta(status="running")
        before = full_snapshot(copy)
        with ScanStore.open(copy) as reader:
            assert reader.is_locked_by_other()
            assert reader.status == "running"
        assert full_snapshot(copy) == before


@contextlib.contextmanager
def read_only_mount(src: Path, where: Path):
    """``src`` seen through a read-only bind mount (root only, where mount is
    allowed), else None."""
    where.mkdir()
    mounted = False
    if shutil.which("mount") and os.geteuid() == 0:
        r = subprocess.run(["mount", "--bind", str(src), str(where)], capture_output=True)
        mounted = r.returncode == 0
        if mounted:
            r = subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", str(where)], capture_output=True)
                mounted = False
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], capture_output=True, check=True)


@contextlib.contextmanager
def read_only_tree(path: Path):
    """Every file and folder of ``path`` read-only (does not stop root)."""
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
    for p, m in sorted(modes.items(), key=lambda x: -len(x[0].parts)):
        p.chmod(m & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield path
    finally:
        for p, m in sorted(modes.items(), key=lambda x: len(x[0].parts)):
            p.chmod(m)


@pytest.mark.parametrize("status", ["canceled", "running"])
def test_a_store_on_read_only_media_opens_for_reading_analysis_and_export(copy, tmp_path, status):
    set_meta(copy, status=status)
    before = full_snapshot(copy)
    with read_only_mount(copy, tmp_path / "ro") as ro:
        if ro is None:  # no mount here: a read-only tree (enforced unless root)
            ctx = read_only_tree(copy)
        else:
            probe = ro / "probe"
            with pytest.raises(OSError):  # really read-only, also for root
                probe.write_text("x")
            ctx = contextlib.nullcontext(ro)
        with ctx as path:
            facts = read_everything(path, tmp_path)
            assert facts["status"] == ("interrupted" if status == "running" else status)
            assert facts["done"] == N_DONE
            assert facts["problems"] == []
            if ro is not None:  # writing is refused cleanly, nothing half-done
                with pytest.raises(OSError, match="cannot lock"):
                    ScanStore.open(path, mode="r+")
                with pytest.raises(OSError):
                    ScanStore.create(path, small_plan(width_um=1.0), overwrite=True)
    assert full_snapshot(copy) == before


# ------------------------------------------ 2. a store that does not match its plan
def edit_plan(path: Path, edit) -> None:
    node = json.loads((path / "zarr.json").read_text())
    edit(node["attributes"]["seccm"]["plan"])
    (path / "zarr.json").write_text(json.dumps(node))


def _pitch(p):
    p["pitch_um"] = 0.4


def _shift(p):
    p["area"]["center_x_um"] = 1.0


def _order(p):
    p["order"] = "shuffled"
    p["shuffle_seed"] = 11


def _program(p):
    p["measurement"]["duration_s"] *= 1.5


def _garbage(p):
    p["pitch_um"] = -1


PLAN_EDITS = {
    "pitch": (_pitch, r"plan gives 25 points but the store records 16"),
    "shifted": (_shift, r"no longer gives the recorded points: 16 of 16 differ.*point 0"),
    "order": (_order, r"no longer gives the recorded points"),
    "program": (_program, r"samples per point but the store records"),
    "invalid": (_garbage, r"not a valid plan"),
}


def refuse_resume(core, path: Path, match: str, exc=StoreDamagedError) -> Exception:
    """Resume is refused before anything on the rig moves; the store's files
    are untouched (its lock file aside, which the refused writer took)."""
    before_rig = rig_state(core)
    before_files = tree_snapshot(path)
    with pytest.raises(exc, match=match) as e:
        Scan.resume(core, path)
    assert rig_state(core) == before_rig  # positions, cell, potential, instrument clock
    assert tree_snapshot(path) == before_files
    with pytest.raises(exc):  # the store, too, refuses to be written
        ScanStore.open(path, mode="r+")
    if exc is StoreDamagedError:  # and the lock is free again: the refusal held nothing
        ScanStore.open(path, mode="r+", validate=False).close()
    return e.value


@pytest.mark.parametrize("edit", list(PLAN_EDITS))
def test_resume_refuses_a_plan_edited_by_hand(core, copy, edit):
    func, match = PLAN_EDITS[edit]
    edit_plan(copy, func)
    err = refuse_resume(core, copy, match)
    assert "was the plan edited?" in str(err) or edit == "invalid"
    assert err.readable
    assert f"the {N_DONE} completed points are intact and can still be read" in str(err)
    with ScanStore.open(copy) as s:  # reading is unaffected
        assert int(s.done_mask().sum()) == N_DONE


def test_resume_refuses_recorded_points_that_the_plan_does_not_give(core, copy):
    """The other way round: the plan is intact, a recorded position was changed."""
    root = zarr.open_group(str(copy), mode="r+")
    x = root["points/x_um"][:]
    x[5] += 0.01
    root["points/x_um"][:] = x
    err = refuse_resume(core, copy, r"1 of 16 differ, e\.g\. point 5 is planned at")
    assert err.readable


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_points": 17}, r"plan gives 16 points but the store records 17"),
        ({"n_samples": 3}, r"samples per point but the store records 3"),
        ({"grid": {"x0_um": 0.0, "y0_um": -1.0, "pitch_um": 0.5, "nx": 4, "ny": 4}}, r"map grid"),
        ({"sample_rate_Hz": 1.0}, r"the plan samples at .* Hz but the store records 1 Hz"),
        ({"readout_window_s": [0.0, 1.0]}, r"readout window"),
        ({"format_version": 99}, r"format_version is 99"),
        ({"status": "paused"}, r"status 'paused' is not one of"),
    ],
)
def test_resume_refuses_metadata_that_disagrees_with_the_arrays(core, copy, changes, match):
    set_meta(copy, **changes)
    refuse_resume(core, copy, match)


def test_an_intact_interrupted_store_still_resumes_to_completion(core, copy):
    assert ScanStore.open(copy).problems() == []
    scan = Scan.resume(core, copy)
    assert scan.run(handle_signals=False) == "complete"
    done = assert_done_points_intact(copy)
    assert done.all()
    with ScanStore.open(copy, mode="r+") as s:  # validated again: still whole
        assert s.problems() == []


# --------------------------------------------------------------- 3. a damaged store
def _rm(rel):
    def damage(path: Path) -> None:
        target = path / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    return damage


def _truncate(rel, size):
    def damage(path: Path) -> None:
        with open(path / rel, "r+b") as f:
            f.truncate(size)

    return damage


def _garble(rel):
    def damage(path: Path) -> None:
        data = bytearray((path / rel).read_bytes())
        data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
        (path / rel).write_bytes(bytes(data))

    return damage


#: (damage, what the refusal names, the completed points still readable)
DAMAGE = {
    "map array": (_rm("maps/current/0"), r"array maps/current/0 is missing", True),
    "map group": (_rm("maps/contact_height"), r"maps/contact_height/0 is missing", True),
    "results array": (_rm("results/status"), r"array results/status is missing", False),
    "trace array": (_rm("traces/potential_V"), r"array traces/potential_V is missing", False),
    "points array": (_rm("points/y_um"), r"array points/y_um is missing", True),
    "array metadata": (_rm("results/value_A/zarr.json"), r"results/value_A is missing", False),
    "status chunk": (
        _rm("results/status/c/0"),
        r"flagged done but have no landing status.*results/status/c/0 is missing",
        False,
    ),
    "time chunk": (
        _rm("results/wall_time_s/c/0"),
        r"no time of measurement.*results/wall_time_s/c/0 is missing",
        False,
    ),
    "done chunk": (
        _rm("results/done/c/0"),
        r"results/done/c/0 is missing: which of its points were measured is lost",
        False,
    ),
    "done chunk truncated": (
        _truncate("results/done/c/0", 5),
        r"chunk file results/done/c/0 cannot be read",
        False,
    ),
    "points chunk": (
        _rm("points/x_um/c/0"),
        r"no longer gives the recorded points.*points/x_um/c/0 is missing",
        True,
    ),
    "trace chunk": (
        _rm("traces/current_A/c/0/0"),
        r"chunk file traces/current_A/c/0/0 of completed points is missing",
        False,
    ),
    "trace chunk truncated": (
        _truncate("traces/potential_V/c/0/0", 100),
        r"traces/potential_V/c/0/0 is truncated or damaged \(100 bytes",
        False,
    ),
    "map chunk truncated": (
        _truncate("maps/current/0/c/0/0", 7),
        r"chunk file maps/current/0/c/0/0 cannot be read",
        True,
    ),
    "map chunk garbled": (
        _garble("maps/contact_height/0/c/0/0"),
        r"chunk file maps/contact_height/0/c/0/0 cannot be read",
        True,
    ),
    "map chunk": (
        _rm("maps/current/0/c/0/0"),
        r"chunk file maps/current/0/c/0/0 of completed points is missing",
        True,
    ),
    "time axis": (_rm("traces/time_s/c/0"), r"traces/time_s is not the program's time axis", True),
    "metadata": (
        lambda p: set_meta(p, sessions={"oops": 1}),
        r"metadata sessions is not a JSON list",
        True,
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_refuses_a_damaged_store_before_the_rig_moves(core, copy, damage):
    func, match, readable = DAMAGE[damage]
    func(copy)
    err = refuse_resume(core, copy, match)
    assert err.readable is readable
    if readable:
        assert f"the {N_DONE} completed points are intact and can still be read" in str(err)
    else:
        assert "Completed points are damaged too" in str(err)
    assert any(m in str(err) for m in err.problems)
    with ScanStore.open(copy) as s:  # still opens for reading
        assert s.problems() == err.problems
        if readable:
            assert int(s.done_mask().sum()) == N_DONE


def test_done_flags_keep_their_chunk_files_when_every_point_is_reset(copy):
    """zarr drops a chunk equal to the fill value; the done flags are written
    with every chunk kept, so a lost chunk file is damage, never "pending"."""
    with ScanStore.open(copy, mode="r+") as s:
        s.reset_points(np.arange(s.n_points))
        assert int(s.done_mask().sum()) == 0
    assert (copy / "results/done/c/0").is_file()
    with ScanStore.open(copy) as s:
        assert s.problems() == []


def test_reading_a_damaged_store_names_what_is_missing(copy):
    """Not a bare KeyError: the reader says which array is missing, and
    ``problems()`` lists everything (what ``info`` can show)."""
    shutil.rmtree(copy / "results/status")
    with ScanStore.open(copy) as s:
        assert s.problems() == ["array results/status is missing"]
        assert int(s.done_mask().sum()) == N_DONE  # the rest still reads
        with pytest.raises(StoreDamagedError, match=r"array results/status is missing"):
            s.status_counts()


def test_leftovers_of_a_killed_chunk_write_are_harmless(core, copy):
    """zarr writes a chunk to a temporary ``*.partial`` file, then renames it: a
    kill in between leaves the partial file and the old chunk, a whole store."""
    (copy / "results/done/c" / "0.0123abcd.partial").write_bytes(b"\x00\x01")
    with ScanStore.open(copy, mode="r+") as s:
        assert s.problems() == []


# ---------------------------------------------------- 4. a creation that was killed
class Killed(Exception):
    """Stands for the process ending at this instant."""


class Steps(list):
    """The steps of a creation, and the zarr writes still in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.killed = False

    def settle(self) -> None:
        """Wait for zarr's writes on other threads that the kill raced with
        (they raise too, once the kill happened): quiet for 20 ms."""
        t_end = time.monotonic() + 10
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.02:
            if self.in_flight:
                quiet_since = time.monotonic()
            assert time.monotonic() < t_end, "zarr writes did not end"
            time.sleep(0.001)


def count_steps(monkeypatch, kill_at: int | None, partial: bool = False) -> Steps:
    """Make creation end (raise Killed) just before its ``kill_at``-th step:
    one of the store's own steps or one file that zarr writes; nothing after
    it is written. With ``partial``, the killed zarr write leaves its
    temporary file, as a kill in the middle of the write would. Returns the
    steps seen."""
    steps = Steps()

    def step(what: str) -> None:
        with steps.lock:
            steps.append(what)
            if steps.killed or (kill_at is not None and len(steps) - 1 == kill_at):
                steps.killed = True
                raise Killed(what)

    real_put = zarr_local._put

    def put(path: Path, value, exclusive: bool = False):
        with steps.lock:
            steps.in_flight += 1
        try:
            try:
                step(f"write {path}")
            except Killed:
                if partial:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.with_suffix(f".{uuid.uuid4().hex}.partial").write_bytes(b"\x00")
                raise
            return real_put(path, value, exclusive=exclusive)
        finally:
            with steps.lock:
                steps.in_flight -= 1

    monkeypatch.setattr(store_mod, "_creation_step", step)
    monkeypatch.setattr(zarr_local, "_put", put)
    return steps


def classify(path: Path) -> str:
    """What a killed creation left at ``path``: 'nothing', 'valid' or 'half'.
    Anything else fails the test."""
    if not path.exists():
        leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
        for name in leftovers:  # a hidden folder renamed into place never got there
            assert name.startswith(f".{path.name}.creating-"), leftovers
        return "nothing"
    before = full_snapshot(path)
    try:
        with ScanStore.open(path) as s:
            assert s.problems() == [], s.problems()
            kind = "valid"
    except StoreIncompleteError as e:
        assert CREATING_MARKER in {p.name for p in path.iterdir()}
        assert "caught mid-creation" in str(e) and "no point was measured" in str(e)
        kind = "half"
    assert full_snapshot(path) == before  # looking wrote nothing
    return kind


def test_creation_killed_at_every_step_leaves_a_recognized_store(core, tmp_path, monkeypatch):
    plan = small_plan(width_um=1.0)  # 4 points
    steps = count_steps(monkeypatch, None)
    ScanStore.create(tmp_path / "probe.seccm.zarr", plan).close()
    total = len(steps)
    assert total > 20, steps  # the store's own steps and every file zarr writes
    kinds = []
    for k in range(total):
        path = tmp_path / f"k{k:03d}.seccm.zarr"
        killed = count_steps(monkeypatch, k, partial=k % 2 == 1)
        with pytest.raises(Killed):
            ScanStore.create(path, plan)
        killed.settle()
        monkeypatch.undo()
        kind = classify(path)
        kinds.append(kind)
        if kind == "half":
            with pytest.raises(StoreIncompleteError, match=MID_CREATION):
                ScanStore.open(path, mode="r+")
            with pytest.raises(StoreExistsError, match="caught mid-creation"):
                ScanStore.check_creatable(path)
            ScanStore.check_creatable(path, overwrite=True)
            refuse_resume(core, path, MID_CREATION, exc=StoreIncompleteError)
        if kind != "nothing":
            with ScanStore.create(path, plan, overwrite=True) as s:
                assert s.problems() == []
        else:
            ScanStore.create(path, plan).close()
        # the killed creation's hidden folder, if any, was cleaned up by the new one
        assert (
            sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{path.name}")) == []
        )
        assert classify(path) == "valid"
    assert kinds[0] == "nothing" and "half" in kinds
    assert all(k == "half" for k in kinds[kinds.index("half") :])  # complete only at the end


def test_overwrite_killed_at_every_step_leaves_the_old_or_a_recognized_store(
    interrupted, tmp_path, monkeypatch
):
    """Every step of replacing a store (marking it, removing its arrays one by
    one), and the first and last steps of writing the new one: what follows
    is a fresh creation's (the test above kills each of those)."""
    plan = small_plan(width_um=1.0)
    probe = tmp_path / "probe.seccm.zarr"
    shutil.copytree(interrupted, probe)
    steps = count_steps(monkeypatch, None)
    ScanStore.create(probe, plan, overwrite=True).close()
    monkeypatch.undo()
    first_write = next(i for i, s in enumerate(steps) if s.startswith("write "))
    assert steps[0] == "mark existing", steps
    assert [s for s in steps[:first_write] if s.startswith("remove ")] == [
        f"remove {name}"
        for name in ("approach", "maps", "points", "results", "traces", "zarr.json")
    ]
    kinds = []
    for k in [*range(first_write + 2), len(steps) - 2, len(steps) - 1]:
        path = tmp_path / f"k{k:03d}.seccm.zarr"
        shutil.copytree(interrupted, path)
        killed = count_steps(monkeypatch, k, partial=k % 2 == 0)
        with pytest.raises(Killed):
            ScanStore.create(path, plan, overwrite=True)
        killed.settle()
        monkeypatch.undo()
        kind = classify(path)
        kinds.append(kind)
        if kind == "valid":  # untouched: the old scan, every point kept
            assert int(assert_done_points_intact(path).sum()) == N_DONE
        ScanStore.create(path, plan, overwrite=True).close()
        assert classify(path) == "valid"
        shutil.rmtree(path)
    assert kinds[0] == "valid" and kinds[-1] == "half"


def test_creation_killed_by_sigkill_leaves_a_recognized_store(tmp_path):
    """A real kill (SIGKILL: no clean-up of any kind, the lock dropped by the
    operating system) at a few instants of creation."""
    if sys.platform == "win32":
        pytest.skip("SIGKILL")
    plan_file = tmp_path / "plan.json"
    small_plan(width_um=1.0).save(plan_file)
    code = textwrap.dedent(
        """
        import sys, time
        from napari_seccm.acquisition import store
        from napari_seccm.acquisition.plan import ScanPlan

        stop_at = sys.argv[2]

        def step(what):
            if what == stop_at:
                print("at", what, flush=True)
                time.sleep(60)

        store._creation_step = step
        store.ScanStore.create(sys.argv[1], ScanPlan.load(sys.argv[3]))
        """
    )
    expected = {"rename": "nothing", "points/x_um": "half", "complete": "half"}
    for at, kind in expected.items():
        path = tmp_path / f"{at.replace('/', '_')}.seccm.zarr"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path), at, str(plan_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == f"at {at}", proc.stderr.read()
            if path.exists():  # being created right now: neither read nor replaced
                with pytest.raises(StoreIncompleteError, match="being created right now"):
                    ScanStore.open(path)
                with pytest.raises(StoreLockedError):
                    ScanStore.create(path, small_plan(width_um=1.0), overwrite=True)
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert classify(path) == kind
        with ScanStore.create(path, small_plan(width_um=1.0), overwrite=kind != "nothing") as s:
            assert s.problems() == []
        assert [p.name for p in tmp_path.iterdir() if ".creating-" in p.name] == []


def test_a_store_caught_mid_creation_can_be_removed_and_nothing_else(
    interrupted, tmp_path, monkeypatch
):
    path = tmp_path / "half.seccm.zarr"
    killed = count_steps(monkeypatch, 20)
    with pytest.raises(Killed):
        ScanStore.create(path, small_plan(width_um=1.0))
    killed.settle()
    monkeypatch.undo()
    assert classify(path) == "half"
    ScanStore.remove_incomplete(path)
    assert not path.exists()
    before = full_snapshot(interrupted)
    with pytest.raises(ValueError, match="not a store caught mid-creation; nothing was removed"):
        ScanStore.remove_incomplete(interrupted)
    assert full_snapshot(interrupted) == before


def test_overwrite_still_never_replaces_what_is_not_a_store(tmp_path):
    plan = small_plan(width_um=1.0)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "important.txt").write_text("keep me")
    (notes / CREATING_MARKER).write_text("")  # even with a stray marker in it
    with pytest.raises(StoreExistsError, match="never replaced"):
        ScanStore.check_creatable(notes, overwrite=True)
    with pytest.raises(StoreExistsError, match="never replaced"):
        ScanStore.create(notes, plan, overwrite=True)
    assert sorted(p.name for p in notes.iterdir()) == [CREATING_MARKER, "important.txt"]
    plain = tmp_path / "plain.zarr"
    root = zarr.open_group(str(plain), mode="w", zarr_format=3)
    root.create_array("data", shape=(3,), dtype="f8")[:] = [1, 2, 3]
    with pytest.raises(StoreExistsError, match="not a SECCM scan store"):
        ScanStore.create(plain, plan, overwrite=True)
    assert zarr.open_array(str(plain / "data"), mode="r")[:].tolist() == [1, 2, 3]


@pytest.mark.parametrize("leftover", ["empty folder", "empty zarr group"])
def test_overwrite_replaces_what_an_older_version_left_when_killed_creating(tmp_path, leftover):
    """Before the creation marker, a kill at the very start of creating a store
    left an empty folder or a bare zarr group: they hold no data."""
    path = tmp_path / "old.seccm.zarr"
    path.mkdir()
    if leftover == "empty zarr group":
        zarr.open_group(str(path), mode="w", zarr_format=3)
    with pytest.raises(StoreExistsError):
        ScanStore.check_creatable(path)
    with ScanStore.create(path, small_plan(width_um=1.0), overwrite=True) as s:
        assert s.problems() == []


def test_a_trace_recorded_without_a_potential_is_on_disk(tmp_path):
    """An all-NaN trace (an instrument that records no potential) equals the
    arrays' fill value, which zarr would leave off the disk; the store writes
    it, so the completed point's trace chunk is there and the store is whole."""
    from napari_seccm.acquisition.store import OK, PointRecord

    plan = small_plan(width_um=1.0)
    with ScanStore.create(tmp_path / "nopot.seccm.zarr", plan) as s:
        ns = s.n_samples
        recs = [
            PointRecord(
                i=i,
                status=OK,
                value_A=1e-9,
                contact_z_um=10.0,
                x_um=float(s.points()["x_um"][i]),
                y_um=float(s.points()["y_um"][i]),
                t_start_s=float(i),
                wall_time_s=1.7e9 + i,
                current_A=np.full(ns, 1e-9, dtype=np.float32),
                potential_V=np.full(ns, np.nan, dtype=np.float32),
            )
            for i in range(s.n_points)
        ]
        s.write_points(recs)
    with ScanStore.open(tmp_path / "nopot.seccm.zarr") as s:
        assert s.problems() == []
        assert np.isnan(s.trace(0)["potential_V"]).all()
