"""runtime.*: start-up objects frozen out of the collector's reach, GC and GIL pace set."""

import gc
import sys

import pytest

from callserver.runtime_tuning import tune_after_startup
from config.settings import RuntimeSettings, SettingsError, load_settings
from tests.support.ports import free_port


@pytest.fixture
def restore_interpreter():
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_start_up_objects_are_frozen_and_later_ones_still_collected(restore_interpreter):
    started_with: list[list[int]] = [[]]  # alive at "start-up"; lists are always tracked
    assert any(o is started_with for o in gc.get_objects())
    tuning = tune_after_startup(
        RuntimeSettings(gc_freeze=True, gc_threshold=5000, switch_interval_ms=1.0)
    )
    assert tuning.frozen_objects > 1000 and gc.get_freeze_count() > 1000
    assert not any(o is started_with for o in gc.get_objects()), "no collection walks it"
    assert gc.get_threshold()[0] == 5000
    assert sys.getswitchinterval() == pytest.approx(0.001)
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made during calls is still collected
    del cycle
    assert gc.collect() >= 1


def test_freezing_can_be_turned_off(restore_interpreter):
    gc.unfreeze()
    assert tune_after_startup(RuntimeSettings(gc_freeze=False)).frozen_objects == 0


def test_bad_runtime_settings_name_the_key():
    with pytest.raises(SettingsError, match="runtime.switch_interval_ms"):
        load_settings(environ={"CALLSERVER_RUNTIME_SWITCH_INTERVAL_MS": "0"})
    with pytest.raises(SettingsError, match="runtime.gc_threshold"):
        load_settings(environ={"CALLSERVER_RUNTIME_GC_THRESHOLD": "0"})


def test_serve_runs_on_uvloop_when_asked(server_factory):
    uvloop = pytest.importorskip("uvloop")
    server = server_factory(
        free_port(),
        extra_env={
            "CALLSERVER_RUNTIME_EVENT_LOOP": "uvloop",
            "CALLSERVER_RUNTIME_CLOCK_EARLY_WAKE_MS": "1",
        },
    ).start(timeout=60)
    assert "event loop: uvloop" in server.log(), uvloop.__version__
    with pytest.raises(SettingsError, match="runtime.event_loop"):
        load_settings(environ={"CALLSERVER_RUNTIME_EVENT_LOOP": "trio"})
