"""Publishing touches only what it made: folders beside the target that merely look like
its leftovers are left alone, its own leftovers are repaired even under a reused process
id, and two publishes of one target take turns."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading

import pytest

from benchmark.publish import publish, publish_lock
from tests.reliability.conftest import tree_hashes


@pytest.mark.parametrize("name", ["{out}.old-backup", "{out}.tmp-mine", "{out}.old-12x", "{out}.tmp-"])
@pytest.mark.parametrize("out_exists", [True, False], ids=["out-present", "out-missing"])
def test_user_folders_that_look_like_leftovers_are_not_touched(published, name, out_exists):
    out = published.out
    user = out.with_name(name.format(out=out.name))
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    mine = tree_hashes(user)
    if not out_exists:
        shutil.rmtree(out)
    publish(published.grid, published.wd, out)
    assert tree_hashes(user) == mine  # neither deleted nor swapped in
    assert (out / "records.jsonl").is_file() and not (out / "notes.txt").exists()


def test_a_leftover_of_this_very_process_id_is_restored(published):
    """A publish killed between its renames, then a new run that got the same pid (common in
    containers): the moved-aside folder is put back before anything is built."""
    out = published.out
    before = tree_hashes(out)
    os.rename(out, out.with_name(f"{out.name}.old-{os.getpid()}"))
    publish(published.grid, published.wd, out, ran=set())  # --cells of nothing new: keep all rows
    assert not out.with_name(f"{out.name}.old-{os.getpid()}").exists()
    after = tree_hashes(out)
    assert after["records.jsonl"] == before["records.jsonl"]
    assert after["cells.jsonl"] == before["cells.jsonl"]


def test_a_second_publish_of_one_target_waits_for_the_first(published):
    out = published.out
    holder = open(publish_lock(out), "a")  # another publisher, mid-publish
    fcntl.flock(holder, fcntl.LOCK_EX)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (publish(published.grid, published.wd, out), done.set()))
    worker.start()
    try:
        assert not done.wait(1.0), "the publish went ahead while another held the target"
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        holder.close()
    worker.join(60)
    assert done.is_set() and (out / "records.jsonl").is_file()
