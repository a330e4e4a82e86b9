"""Debounce: repeated reads of a tag within the sliding window are one tap."""

from __future__ import annotations

from drivers.rfid.debounce import Debouncer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repeats_within_the_window_are_one_tap():
    clock = Clock()
    debouncer = Debouncer(2.0, clock)
    assert debouncer.is_new_tap("A")
    clock.now += 1.9
    assert not debouncer.is_new_tap("A")
    assert debouncer.is_new_tap("B")  # another tag is its own tap


def test_the_window_slides_while_the_tag_stays_on_the_reader():
    clock = Clock()
    debouncer = Debouncer(2.0, clock)
    assert debouncer.is_new_tap("A")
    for _ in range(10):  # 15 s on the reader, read every 1.5 s
        clock.now += 1.5
        assert not debouncer.is_new_tap("A")
    clock.now += 2.01
    assert debouncer.is_new_tap("A")


def test_a_new_tap_after_the_window():
    clock = Clock()
    debouncer = Debouncer(2.0, clock)
    assert debouncer.is_new_tap("A")
    clock.now += 2.5
    assert debouncer.is_new_tap("A")


def test_zero_window_makes_every_read_a_tap():
    debouncer = Debouncer(0.0, Clock())
    assert debouncer.is_new_tap("A")
    assert debouncer.is_new_tap("A")


def test_memory_is_bounded_by_the_window():
    clock = Clock()
    debouncer = Debouncer(2.0, clock)
    for index in range(1000):
        debouncer.is_new_tap(f"T{index}")
        clock.now += 0.5
    assert len(debouncer._last_seen) <= 5
