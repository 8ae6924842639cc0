"""ChipConfig: the published geometry, the presets, hashability, and errors that name the bad field."""

from __future__ import annotations

import jax
import pytest

import lpu_jax as L
from lpu_jax.config import DEFAULT_DELAYS, standard_floorplan


def test_groqchip1_published_geometry():
    cfg = L.groqchip1()
    assert cfg.n_superlanes == 20 and cfg.lanes_per_superlane == 16 and cfg.n_lanes == 320
    assert cfg.n_streams == 32  # per direction: 32 east + 32 west
    assert cfg.floorplan == ("MXM", "MXM", "SXM") + ("MEM",) * 44 + ("VXM",) + ("MEM",) * 44 + ("SXM", "MXM", "MXM")
    assert cfg.n_mem == 88 and cfg.mem_words == 8192
    assert cfg.sram_bytes == 88 * 8192 * 320 == 220 * 2**20  # 220 MiB
    assert cfg.mem_names[43] == "W0" and cfg.mem_names[44] == "E0" and cfg.mem_names[0] == "W43"
    assert cfg.n_planes == 4 and cfg.n_lanes == 320  # four 320 x 320 MXM planes
    # 144 queues in P20: 88 MEM + 16 VXM + 12 MXM (3 per plane) + 28 SXM; the model has sxm_units per SXM slice [A]
    assert len(L.queue_names(cfg)) == 88 + 16 + 12 + 2 * cfg.sxm_units


def test_tiny_has_the_same_floorplan_shape():
    cfg = L.tiny()
    assert cfg.floorplan == standard_floorplan(2)
    assert cfg.n_lanes == 32 and cfg.n_mem == 4


def test_config_is_hashable_and_static_under_jit():
    a, b = L.tiny(), L.tiny()
    assert a == b and hash(a) == hash(b) and a != L.groqchip1()

    f = jax.jit(lambda x, cfg: x + cfg.n_lanes, static_argnums=1)
    assert int(f(1, a)) == 33


def test_every_assumption_has_a_documented_default():
    names = {n for n, _ in DEFAULT_DELAYS}
    assert {"Read", "Write", "Gather", "Scatter", "Notify"} <= names
    import lpu_jax.config as c

    src = open(c.__file__).read()
    for field in (
        "slice_positions",
        "delays",
        "group_byte_order",
        "group_aligned",
        "stagger_cycles",
        "mxm_acc_rows",
        "sxm_units",
    ):
        i = src.index(f"    {field}:")
        assert '"""[A]' in src[i : i + 400], field


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(n_superlanes=0), "n_superlanes"),
        (dict(n_streams=6), "n_streams"),
        (dict(mxm_acc_rows=0), "mxm_acc_rows"),
        (dict(n_superlanes=65), "n_superlanes"),  # 1040 lanes: int8 sums could reach 2^24 + ...
        (dict(sxm_units=0), "sxm_units"),
        (dict(mem_words=7), "mem_words"),
        (dict(mem_words=1 << 17), "mem_words"),
        (dict(floorplan=("MEM", "VXM", "MEM", "MEM")), "floorplan"),
        (dict(floorplan=("MEM", "MEM")), "floorplan"),
        (dict(floorplan=("MEM", "VXM", "ALU")), "floorplan"),
        (dict(slice_positions=(0, 1)), "slice_positions"),
        (dict(delays=(("Read", 2),)), "delays"),
        (dict(delays=DEFAULT_DELAYS[1:] + (("Read", 0),)), "delays"),
        (dict(delays=DEFAULT_DELAYS + (("Bogus", 1),)), "delays"),
        (dict(group_byte_order="middle"), "group_byte_order"),
        (dict(clock_hz=0), "clock_hz"),
        (dict(stagger_cycles=-1), "stagger_cycles"),
    ],
)
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(L.ConfigError, match=rf"ChipConfig\.{field}:"):
        L.tiny().replace(**kw)


def test_latency_adds_the_stagger_once():
    cfg = L.groqchip1()
    assert cfg.latency_s(880) == pytest.approx((880 + 20) / 900e6)


def test_ring_depth_must_cover_the_cross_superlane_latencies():
    # groqchip1: an ABC's product is due d(mxm.abc) + 19 = 23 cycles later, so 20 ring slots cannot hold it
    with pytest.raises(L.ConfigError, match=r"ChipConfig\.max_delay_slots: must exceed mxm.abc plus the cross"):
        L.ChipConfig(max_delay_slots=20)
