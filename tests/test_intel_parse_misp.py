"""MISP event and feed-directory parser (controller/intel/parse_misp.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from controller.intel.entries import FeedEntry, FeedFormatError, Skipped
from controller.intel.parse_misp import parse_misp, parse_misp_dir, tlp_from_tags

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
EVENT = "event 5f1e6a3c-2b4d-4e8f-9a01-0c2d3e4f5a6b"


def attr(n: int) -> str:
    return f"{EVENT} attribute a1000000-0000-4000-8000-00000000000{n}"


def obj_attr(n: int) -> str:
    return f"{EVENT} attribute a2000000-0000-4000-8000-00000000000{n}"


def test_fixture_event_with_objects_exactly() -> None:
    items = list(parse_misp((FEEDS / "misp_event.json").read_text()))
    assert items == [
        FeedEntry(attr(1), "192.0.2.50", tlp="amber"),
        FeedEntry(attr(2), "198.51.100.25", tlp="clear"),  # ip-dst|port; the attribute's tlp:white wins
        FeedEntry(attr(3), "c2.bad.example", tlp="amber"),  # domain|ip: two entries
        FeedEntry(attr(3), "203.0.113.9", tlp="amber"),
        FeedEntry(attr(4), "https://login.bad.example/owa/", is_url=True, tlp="amber"),
        Skipped(attr(5), "to_ids is false", True),
        Skipped(attr(6), "type 'md5' is not a network indicator", True),
        # attribute 7 is deleted: nothing at all
        FeedEntry(attr(8), "mail.bad.example", tlp="red"),  # hostname|port, to_ids "1", tag TLP:RED
        FeedEntry(obj_attr(1), "cdn.bad.example", tlp="amber"),
        FeedEntry(obj_attr(2), "2001:db8::bad", tlp="amber"),
        Skipped(
            f"{EVENT} object b2000000-0000-4000-8000-000000000001 attribute #2",
            "type 'datetime' is not a network indicator",
            True,
        ),
        Skipped(obj_attr(3), "type 'sha256' is not a network indicator", True),
    ]


def test_feed_directory_in_manifest_order_with_manifest_tlp() -> None:
    items = list(parse_misp_dir(FEEDS / "misp_feed"))
    scanner = "event 0a5c2f1e-3b4d-4c5e-8f6a-7b8c9d0e1f2a attribute c3000000-0000-4000-8000-00000000000"
    phishing = "event 1b6d3a2f-4c5e-4d6f-9a7b-8c9d0e1f2a3b attribute c3000000-0000-4000-8000-00000000000"
    assert items == [
        FeedEntry(scanner + "1", "203.0.113.44", tlp="green"),  # the event file has no tag: the manifest's
        FeedEntry(scanner + "2", "192.0.2.7", tlp="amber+strict"),
        FeedEntry(phishing + "3", "secure-login.example.net", tlp="clear"),  # an unwrapped event file
        Skipped(phishing + "4", "type 'email-src' is not a network indicator", True),
    ]


def copy_feed(tmp_path: Path) -> Path:
    feed = tmp_path / "feed"
    shutil.copytree(FEEDS / "misp_feed", feed)
    return feed


def test_feed_directory_missing_event_file(tmp_path: Path) -> None:
    feed = copy_feed(tmp_path)
    (feed / "1b6d3a2f-4c5e-4d6f-9a7b-8c9d0e1f2a3b.json").unlink()
    items = parse_misp_dir(feed)
    with pytest.raises(FeedFormatError) as err:  # before any entry: a feed missing an event is broken
        next(items)
    assert str(err.value) == (
        "event 1b6d3a2f-4c5e-4d6f-9a7b-8c9d0e1f2a3b is in manifest.json but "
        "1b6d3a2f-4c5e-4d6f-9a7b-8c9d0e1f2a3b.json is missing"
    )


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"../../etc/passwd": {}}, "'../../etc/passwd' is not an event uuid"),
        ({"{0A5C2F1E-3B4D-4C5E-8F6A-7B8C9D0E1F2A}": {}}, "is not an event uuid"),
        (["0a5c2f1e-3b4d-4c5e-8f6a-7b8c9d0e1f2a"], "must map event uuids to metadata"),
    ],
)
def test_feed_directory_bad_manifest(tmp_path: Path, manifest: Any, message: str) -> None:
    feed = copy_feed(tmp_path)
    (feed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeedFormatError, match=re.escape(message)):
        list(parse_misp_dir(feed))


def test_feed_directory_without_manifest_or_with_broken_event(tmp_path: Path) -> None:
    with pytest.raises(FeedFormatError, match=r"is not a MISP feed: no manifest\.json"):
        list(parse_misp_dir(tmp_path))
    feed = copy_feed(tmp_path)
    (feed / "0a5c2f1e-3b4d-4c5e-8f6a-7b8c9d0e1f2a.json").write_text("{not json")
    with pytest.raises(
        FeedFormatError, match=r"^0a5c2f1e-3b4d-4c5e-8f6a-7b8c9d0e1f2a\.json cannot be read: "
    ):
        list(parse_misp_dir(feed))


def test_list_of_events_and_index_fallbacks() -> None:
    events = [
        {
            "Event": {
                "info": "no uuids",
                "Attribute": [{"type": "ip-dst", "to_ids": True, "value": "192.0.2.1"}],
            }
        },
        {
            "info": "bare event, object without uuid",
            "uuid": "e1",
            "Object": [
                {"name": "x", "Attribute": []},
                {"name": "ip-port", "Attribute": [{"type": "ip-dst", "to_ids": True, "value": "192.0.2.2"}]},
            ],
        },
    ]
    items = list(parse_misp(events))
    assert [(i.where, i.value) for i in items] == [
        ("event #0 attribute #0", "192.0.2.1"),
        ("event e1 object #1 attribute #0", "192.0.2.2"),
    ]
    assert list(parse_misp(json.dumps({"response": events}).encode())) == items


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ({"type": "ip-src|port", "to_ids": True, "value": "2001:db8::1|443"}, [("2001:db8::1", False)]),
        ({"type": "ip-dst", "to_ids": "True", "value": " 192.0.2.1 "}, [("192.0.2.1", False)]),
        (
            {"type": "domain|ip", "to_ids": 1, "value": "a.example|2001:db8::2"},
            [("a.example", False), ("2001:db8::2", False)],
        ),
        ({"type": "url", "to_ids": True, "value": "hxxp://bad.example/"}, [("hxxp://bad.example/", True)]),
    ],
)
def test_attribute_values(attribute: dict[str, Any], expected: list[tuple[str, bool]]) -> None:
    items = list(parse_misp({"Attribute": [attribute]}))
    assert [(i.value, i.is_url) for i in items] == expected
    assert all(i.where == "event #0 attribute #0" for i in items)


@pytest.mark.parametrize(
    ("attribute", "reason", "unsupported"),
    [
        ({"type": "ip-dst", "to_ids": "0", "value": "192.0.2.1"}, "to_ids is false", True),
        ({"type": "ip-dst", "value": "192.0.2.1"}, "to_ids is false", True),
        (
            {"type": "sha1", "to_ids": False, "value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
            "type 'sha1' is not a network indicator",
            True,
        ),
        ({"to_ids": True, "value": "192.0.2.1"}, "type 'None' is not a network indicator", True),
        (
            {"type": "ip-dst|port", "to_ids": True, "value": "192.0.2.1"},
            "ip-dst|port value '192.0.2.1' is not address|port",
            False,
        ),
        (
            {"type": "domain|ip", "to_ids": True, "value": "a.example|"},
            "domain|ip value 'a.example|' is not domain|address",
            False,
        ),
        ({"type": "domain", "to_ids": True, "value": ""}, "domain attribute has no value", False),
        ({"type": "domain", "to_ids": True, "value": 5}, "domain attribute has no value", False),
    ],
)
def test_skipped_attributes(attribute: dict[str, Any], reason: str, unsupported: bool) -> None:
    assert list(parse_misp({"Attribute": [attribute]})) == [
        Skipped("event #0 attribute #0", reason, unsupported)
    ]


def test_deleted_attributes_and_objects_yield_nothing() -> None:
    event = {
        "uuid": "e2",
        "Attribute": [{"type": "ip-dst", "to_ids": True, "deleted": "1", "value": "192.0.2.1"}],
        "Object": [
            {"deleted": True, "Attribute": [{"type": "ip-dst", "to_ids": True, "value": "192.0.2.2"}]}
        ],
    }
    assert list(parse_misp({"Event": event})) == []


def test_tlp_tags() -> None:
    assert tlp_from_tags(["tlp:white"]) == "clear"
    assert tlp_from_tags(["TLP:Amber+Strict", "tlp:green"]) == "amber+strict"
    assert tlp_from_tags(["tlp:ex:chr", "misp:tool=x", "pap:red"]) is None
    event = {
        "EventTag": [{"Tag": {"name": "tlp:green"}}, {"Tag": {"name": "tlp:amber"}}],
        "Attribute": [
            {"type": "ip-dst", "to_ids": True, "value": "192.0.2.1"},
            {"type": "ip-dst", "to_ids": True, "value": "192.0.2.2", "Tag": [{"name": "tlp:red"}]},
        ],
    }
    assert [i.tlp for i in parse_misp(event)] == ["amber", "red"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{broken", "MISP feed is not JSON: "),
        ("42", "MISP feed must be an event or a list of events, got JSON int"),
        ({"hello": "world"}, "MISP event #0 is not a MISP event"),
        ([{"Event": "x"}], "MISP event #0 is not a MISP event"),
    ],
)
def test_not_misp(data: Any, message: str) -> None:
    with pytest.raises(FeedFormatError) as err:
        list(parse_misp(data))
    assert str(err.value).startswith(message)
