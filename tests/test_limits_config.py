"""`longops.engine.limits` on its own: the operator's `KIND=N` settings as parsed (and
refused, with one line naming the setting), declared limits merged with overrides, and
`Room`, the arithmetic a limited claim does on what runs and what the buckets hold."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

from longops.engine.limits import ENVIRONMENT, Limit, Limits, Room, parse_limits
from longops.engine.registry import kind


class Empty(BaseModel):
    """A kind's request of no fields."""


# -- parse_limits -------------------------------------------------------------


def test_concurrency_entries_comma_separated_or_repeated() -> None:
    parsed = parse_limits("concurrency", ["generate_videos=2,b=3", " c=4 , d=0 ", "k.v-1_x=5"])
    assert parsed == {"generate_videos": 2, "b": 3, "c": 4, "d": 0, "k.v-1_x": 5}
    assert all(type(v) is int for v in parsed.values())


def test_a_later_entry_for_a_kind_wins() -> None:
    assert parse_limits("key_concurrency", ["a=1", "a=2,a=3"]) == {"a": 3}


def test_empty_entries_are_nothing() -> None:
    assert parse_limits("rate", []) == {}
    assert parse_limits("rate", ["", " , ,"]) == {}


@pytest.mark.parametrize(
    ("entry", "per_second"),
    [
        ("a=5", 5.0),
        ("a=5/s", 5.0),
        ("a=0.5", 0.5),
        ("a=120/m", 2.0),
        ("a=3600/h", 1.0),
        ("a=1/h", 1 / 3600),
        ("a=999999999.999999/s", 999999999.999999),
        ("a=0", 0.0),
    ],
)
def test_rates_are_per_second_or_per_minute_or_hour(entry: str, per_second: float) -> None:
    for field in ("rate", "key_rate"):
        assert parse_limits(field, [entry]) == {"a": pytest.approx(per_second)}


@pytest.mark.parametrize(
    "entry",
    [
        "a",
        "a=",
        "=2",
        "a==2",
        "a=2=3",
        "a=-1",
        "a=+1",
        "a=1e3",
        "a=0x10",
        "a=inf",
        "a=nan",
        "a=.5",
        "a=5.",
        "a= 3",
        "a =3",
        "a=1234567890",  # ten digits: beyond any sensible limit
        "a=" + "9" * 400,
        "a=1.0000001",  # seven decimals
        "a=5/x",
        "a=5/S",
        "a=5/s/s",
        "a=5 /s",
        "1a=2",
        "_a=2",
        "a b=2",
        "a" * 129 + "=2",
        "a\x00=1",
        "a=1\x00",
        "a=1\nb=2",
        "a=1;b=2",
        "é=1",
        "a=\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to a regex's \d, not to an operator
        "a=\uff11\uff12",  # FULLWIDTH 12
        "a=1.\u0665",
    ],
)
def test_malformed_entries_are_refused_in_one_line_naming_the_setting(entry: str) -> None:
    for field in ("concurrency", "rate"):
        with pytest.raises(ValueError) as raised:
            parse_limits(field, ["ok=1", entry])
        message = str(raised.value)
        flag = "--" + field.replace("_", "-")
        assert message.startswith(f"{flag}: ") and "\n" not in message and "\x00" not in message
        assert "KIND=NUMBER" in message


@pytest.mark.parametrize("entry", ["a=2/s", "a=2/m", "a=1.5", "a=2.0"])
def test_a_concurrency_is_a_whole_number_without_a_period(entry: str) -> None:
    for field in ("concurrency", "key_concurrency"):
        with pytest.raises(ValueError, match="generate_videos=2"):
            parse_limits(field, [entry])


def test_the_message_names_the_setting_given() -> None:
    with pytest.raises(ValueError, match=r"^LONGOPS_KEY_RATE: 'a=x' is not KIND=NUMBER"):
        parse_limits("key_rate", ["a=x"], setting="LONGOPS_KEY_RATE")


def test_an_unknown_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown limit 'speed'"):
        parse_limits("speed", ["a=1"])


def test_every_limit_has_its_setting() -> None:
    assert ENVIRONMENT == {
        "concurrency": "LONGOPS_CONCURRENCY",
        "key_concurrency": "LONGOPS_KEY_CONCURRENCY",
        "rate": "LONGOPS_RATE",
        "key_rate": "LONGOPS_KEY_RATE",
    }


# -- Limit and Limits ---------------------------------------------------------


def test_a_limit_of_zeros_is_no_limit() -> None:
    assert not Limit()
    assert Limit(key_rate=0.1) and Limit(key_rate=0.1).rated
    assert not Limit(key_rate=0.1).counts_running
    assert Limit(key_concurrency=1).counts_running and not Limit(key_concurrency=1).rated


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, -math.inf])
def test_a_negative_or_non_finite_limit_is_refused_where_declared(value: float) -> None:
    """Else `concurrency=-1` would keep the kind from ever starting, silently."""
    for field in ("concurrency", "key_concurrency", "rate", "key_rate"):
        with pytest.raises(
            ValueError, match=f"^{field} must be finite and 0 \\(unlimited\\) or more"
        ):
            Limit(**{field: value})
        if value == -1 or field.endswith("rate"):  # (a concurrency override is made whole)
            with pytest.raises(ValueError, match=field):
                Limits.of_kinds({}, {field: {"a": value}})
    with pytest.raises(ValueError, match="rate must be"):
        kind("a", request=Empty, rate=value)


def test_overrides_replace_declared_fields_and_keep_the_others() -> None:
    declared = {"a": Limit(concurrency=2, rate=3.0), "b": Limit(key_concurrency=1)}
    overrides = {
        "concurrency": {"a": 1.0, "c": 4.0},
        "key_rate": {"a": 0.5},
        "rate": {"d": 10.0},
    }
    limits = Limits.of_kinds(declared, overrides)
    assert limits.kinds == {
        "a": Limit(concurrency=1, rate=3.0, key_rate=0.5),
        "b": Limit(key_concurrency=1),
        "c": Limit(concurrency=4),
        "d": Limit(rate=10.0),
    }
    assert type(limits.of("a").concurrency) is int


def test_an_override_of_zero_lifts_a_declared_limit() -> None:
    limits = Limits.of_kinds(
        {"a": Limit(concurrency=2), "b": Limit(concurrency=2, rate=1.0)},
        {"concurrency": {"a": 0, "b": 0}},
    )
    assert limits.kinds == {"b": Limit(rate=1.0)}
    assert limits.of("a") == Limit() and not limits.of("a")


def test_among_gives_the_limited_kinds_served() -> None:
    limits = Limits.of_kinds({"a": Limit(concurrency=1), "b": Limit(), "c": Limit(rate=2.0)}, {})
    assert limits.among(["a", "b", "x"]) == {"a": Limit(concurrency=1)}
    assert limits.among([]) == {}
    assert limits.of("unknown") == Limit()


# -- Room ---------------------------------------------------------------------


def test_room_for_a_kinds_concurrency_counts_what_runs_and_what_it_took() -> None:
    room = Room({"k": Limit(concurrency=3)}, 10.0)
    room.running("k", "A", "x", 1)
    room.running("k", "B", "", 1)
    assert room.open("k") and room.why_not("k", "C", "y") is None
    assert room.take("k", "C", "y")
    assert not room.open("k")
    assert room.why_not("k", "C", "z") == "concurrency_limited"
    assert not room.take("k", "C", "z")
    assert room.full_keys() == []  # the kind is full, no key of it


def test_room_for_a_key_is_the_tenants_own() -> None:
    room = Room({"k": Limit(key_concurrency=2)}, 10.0)
    room.running("k", "A", "x", 2)
    room.running("k", "B", "x", 1)
    assert room.full_keys() == [("k", "A", "x")]
    assert room.open("k")
    assert room.why_not("k", "A", "x") == "concurrency_limited"
    assert room.take("k", "B", "x") and not room.take("k", "B", "x")
    assert room.take("k", "A", "y")


def test_kinds_without_limits_always_have_room() -> None:
    room = Room({"k": Limit(concurrency=1)}, 10.0)
    room.running("k", "", "", 1)
    assert room.open("u") and room.why_not("u", "", "") is None
    assert all(room.take("u", "", "") for _ in range(100))
    assert not room.open("k")


def test_a_missing_bucket_is_full_a_seconds_worth() -> None:
    room = Room({"k": Limit(rate=3), "slow": Limit(rate=0.25)}, 10.0)
    assert [room.take("k", "", "") for _ in range(4)] == [True, True, True, False]
    assert room.why_not("k", "", "") == "rate_limited" and not room.open("k")
    assert [room.take("slow", "", "") for _ in range(2)] == [True, False]  # at least one


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    room = Room({"k": Limit(rate=4), "j": Limit(rate=4), "f": Limit(rate=4)}, 10.0)
    room.bucket("k", False, "", "", 0.0, 9.5)  # half a second ago: two starts
    room.bucket("j", False, "", "", 1.0, 0.0)  # long ago: full, not more
    room.bucket("f", False, "", "", 0.5, 11.0)  # from a clock ahead of ours: not drained
    assert sum(room.take("k", "", "") for _ in range(5)) == 2
    assert sum(room.take("j", "", "") for _ in range(9)) == 4
    assert sum(room.take("f", "", "") for _ in range(9)) == 0


def test_a_key_bucket_and_the_kinds_bucket_both_hold() -> None:
    room = Room({"k": Limit(rate=3, key_rate=1)}, 10.0)
    room.bucket("k", True, "A", "x", 0.0, 10.0)
    assert room.full_keys() == [("k", "A", "x")]
    assert room.why_not("k", "A", "x") == "rate_limited"
    assert room.take("k", "A", "y") and not room.take("k", "A", "y")
    assert room.take("k", "B", "x") and room.take("k", "B", "z")
    assert not room.take("k", "C", "w")  # the kind's three are taken


def test_a_bucket_of_a_rate_no_longer_configured_is_ignored() -> None:
    room = Room({"k": Limit(concurrency=5)}, 10.0)
    room.bucket("k", False, "", "", 0.0, 10.0)
    room.bucket("k", True, "A", "x", 0.0, 10.0)
    assert room.full_keys() == [] and room.take("k", "A", "x")


def test_spent_gives_each_buckets_row_after_the_starts() -> None:
    room = Room({"k": Limit(rate=5, key_rate=2), "c": Limit(concurrency=1)}, 10.0)
    room.bucket("k", False, "", "", 3.0, 9.8)  # 3 + 0.2 s * 5 = 4
    started = [("k", "A", "x"), ("k", "A", "x"), ("k", "B", "x"), ("c", "", "")]
    rows = room.spent(started)
    assert sorted(rows) == sorted(
        [
            ("k", False, "", "", pytest.approx(1.0), 10.0),
            ("k", True, "A", "x", 0.0, 10.0),
            ("k", True, "B", "x", 1.0, 10.0),
        ]
    )


def test_the_horizon_is_the_longest_any_bucket_takes_to_fill() -> None:
    assert Room({"k": Limit(concurrency=1)}, 0.0).horizon() == 0.0
    assert Room({"k": Limit(rate=50)}, 0.0).horizon() == 1.0
    assert Room({"k": Limit(rate=50), "j": Limit(key_rate=0.25)}, 0.0).horizon() == 4.0
