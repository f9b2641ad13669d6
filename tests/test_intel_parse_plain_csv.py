"""Plain and CSV feed parsers and format detection (controller/intel/parse_plain, parse_csv, formats)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from controller.domain.ioc import IocKind, parse_ioc
from controller.intel.entries import FeedEntry, FeedFormatError, Skipped
from controller.intel.formats import FORMATS, detect_format, parse_feed
from controller.intel.parse_csv import parse_csv
from controller.intel.parse_plain import new_entry, parse_plain, strip_port

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def read(name: str) -> str:
    return (FEEDS / name).read_text(encoding="utf-8")


def pairs(items: list) -> list[tuple[str, str]]:
    return [(item.where, item.value) for item in items]


# ---------------------------------------------------------------------------------------------
# plain


def test_firehol_netset_header_is_skipped_and_lines_are_physical() -> None:
    items = list(parse_plain(read("firehol_level1.netset")))
    assert pairs(items) == [
        ("line 24", "192.0.2.1"),
        ("line 25", "192.0.2.128/25"),
        ("line 26", "198.51.100.0/24"),
        ("line 27", "203.0.113.77"),
    ]
    assert all(type(item) is FeedEntry and not item.is_url for item in items)


def test_spamhaus_drop_crlf_and_sbl_comments() -> None:
    items = list(parse_plain(read("spamhaus_drop.txt")))
    assert pairs(items) == [
        ("line 5", "192.0.2.0/24"),
        ("line 6", "198.51.100.0/22"),
        ("line 7", "203.0.113.0/24"),
    ]
    assert [parse_ioc(item.value).kind for item in items] == [IocKind.CIDR4] * 3


def test_plain_comments_blanks_whitespace() -> None:
    text = (
        "# header\n"
        "\n"
        "   \t\n"
        "; semicolon comment\n"
        "  192.0.2.1  \t\n"
        "192.0.2.2 # seen twice\n"
        "192.0.2.3;SBL1\n"
        "  # indented comment\n"
        "bad.example ; phishing\n"
        "#192.0.2.99 commented out\n"
        "192.0.2.4"  # no trailing newline
    )
    assert pairs(list(parse_plain(text))) == [
        ("line 5", "192.0.2.1"),
        ("line 6", "192.0.2.2"),
        ("line 7", "192.0.2.3"),
        ("line 9", "bad.example"),
        ("line 11", "192.0.2.4"),
    ]


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("192.0.2.1:443", "192.0.2.1"),
        ("[2001:db8::1]:8080", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),  # a bare IPv6 address keeps its colons
        ("2001:db8::/32", "2001:db8::/32"),
        ("bad.example:443", "bad.example:443"),  # parse_ioc refuses it with advice
        ("192.0.2.1:http", "192.0.2.1:http"),
        ("[2001:db8::1]:x", "[2001:db8::1]:x"),
    ],
)
def test_ports_are_reduced_to_the_address_only_for_addresses(line: str, value: str) -> None:
    assert strip_port(line) == value
    assert pairs(list(parse_plain(line))) == [("line 1", value)]


def test_plain_urls_are_marked_and_keep_fragments() -> None:
    text = "http://bad.example/a#frag;x\nhttps://bad.example/b # comment\nhttps://bad.example/c;d ; note\n"
    items = list(parse_plain(text))
    assert pairs(items) == [
        ("line 1", "http://bad.example/a#frag;x"),
        ("line 2", "https://bad.example/b"),
        ("line 3", "https://bad.example/c;d"),
    ]
    assert [item.is_url for item in items] == [True, True, True]


def test_stray_text_is_passed_on_for_parse_ioc_to_refuse() -> None:
    (item,) = parse_plain("192.0.2.1 extra words\n")
    assert item == FeedEntry("line 1", "192.0.2.1 extra words")


def test_a_byte_order_mark_is_not_part_of_the_first_value() -> None:
    assert list(parse_plain("\ufeff192.0.2.1\n")) == [FeedEntry("line 1", "192.0.2.1")]
    assert list(parse_csv("\ufeffIP\n192.0.2.1\n")) == [FeedEntry("line 2", "192.0.2.1")]


def test_fast_entries_are_real_frozen_feed_entries() -> None:
    made = new_entry("line 7", "192.0.2.1", True)
    built = FeedEntry("line 7", "192.0.2.1", is_url=True)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert vars(made) == vars(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.value = "198.51.100.1"  # type: ignore[misc]
    (parsed,) = parse_plain("192.0.2.1")
    assert vars(parsed) == vars(FeedEntry("line 1", "192.0.2.1"))


# ---------------------------------------------------------------------------------------------
# CSV


def test_feodo_plain_header_dst_ip() -> None:
    items = list(parse_csv(read("feodo_ipblocklist.csv")))
    assert items == [
        FeedEntry("line 2", "192.0.2.45"),
        FeedEntry("line 3", "198.51.100.7"),
        FeedEntry("line 4", "203.0.113.200"),
    ]


def test_threatfox_commented_header_types_ports_confidence() -> None:
    items = list(parse_csv(read("threatfox_recent.csv")))
    assert items[:3] == [
        FeedEntry("line 10", "192.0.2.99", confidence=100),
        FeedEntry("line 11", "c2.bad.example", confidence=75),
        FeedEntry("line 12", "http://dl.bad.example/payload.bin", is_url=True, confidence=50),
    ]
    assert items[3] == Skipped("line 13", "sha256_hash is a file hash, not a network indicator", True)
    assert items[4] == FeedEntry("line 14", "2001:db8::5", confidence=80)
    short = items[5]
    assert isinstance(short, Skipped) and short.where == "line 15" and not short.unsupported
    assert short.reason == "line 15 has 2 fields, the value column 'ioc_value' is field 3 of 14"
    assert len(items) == 6


def test_urlhaus_url_column_is_url() -> None:
    items = list(parse_csv(read("urlhaus_recent.csv")))
    assert items == [
        FeedEntry("line 10", "http://198.51.100.23:8080/bins/x86", is_url=True),
        FeedEntry("line 11", "https://files.bad.example/invoice.zip", is_url=True),
    ]


def test_column_priority_and_explicit_column() -> None:
    text = "Domain,IP,note\nbad.example,192.0.2.1,x\n"
    assert pairs(list(parse_csv(text))) == [("line 2", "192.0.2.1")]  # ip comes before domain
    assert pairs(list(parse_csv(text, column="DOMAIN"))) == [("line 2", "bad.example")]


def test_missing_column_names_the_columns_found() -> None:
    with pytest.raises(FeedFormatError) as err:
        list(parse_csv(read("feodo_ipblocklist.csv"), column="ioc"))
    assert str(err.value) == (
        "CSV header has no column 'ioc'; columns found: 'first_seen_utc', 'dst_ip', 'dst_port', "
        "'c2_status', 'last_online', 'malware'"
    )
    with pytest.raises(FeedFormatError, match=r"no column one of value, ip, .*columns found: 'a', 'b'"):
        list(parse_csv("a,b\n1,2\n"))
    with pytest.raises(FeedFormatError, match="columns found: 'first_seen_utc', 'ioc_id'"):
        list(parse_csv(read("threatfox_recent.csv"), column="nope"))


def test_quoted_fields_crlf_multiline_and_repeated_header() -> None:
    text = (
        '# "ip","comment"\r\n'
        '"ip","comment"\r\n'
        '"192.0.2.1","a, b"\r\n'
        '"192.0.2.2","spans\r\n'
        'two lines"\r\n'
        "\r\n"
        '"192.0.2.3",""\r\n'
    )
    assert pairs(list(parse_csv(text))) == [
        ("line 3", "192.0.2.1"),
        ("line 4", "192.0.2.2"),
        ("line 7", "192.0.2.3"),
    ]


def test_type_column_and_confidence_checks() -> None:
    text = (
        "indicator,type,confidence\n"
        "http://bad.example/x,url,\n"
        "d41d8cd98f00b204e9800998ecf8427e,md5,90\n"
        "192.0.2.1,ip,101\n"
        "192.0.2.2,ip,high\n"
        ",ip,10\n"
        "192.0.2.3,ip, 0\n"
    )
    items = list(parse_csv(text))
    assert items[0] == FeedEntry("line 2", "http://bad.example/x", is_url=True)
    assert items[1] == Skipped("line 3", "md5 is a file hash, not a network indicator", True)
    assert items[2] == Skipped(
        "line 4", "line 4: confidence '101' in column 'confidence' is not an integer 0-100", False
    )
    assert items[3] == Skipped(
        "line 5", "line 5: confidence 'high' in column 'confidence' is not an integer 0-100", False
    )
    assert items[4] == Skipped("line 6", "line 6: the value column 'indicator' is empty", False)
    assert items[5] == FeedEntry("line 7", "192.0.2.3", confidence=0)


def test_unreadable_csv_names_the_line() -> None:
    text = 'value\n192.0.2.1\n"' + "a" * 200_000 + '"\n'
    items = parse_csv(text)
    assert next(items) == FeedEntry("line 2", "192.0.2.1")
    with pytest.raises(FeedFormatError, match=r"^line 3: CSV cannot be read: field larger than field limit"):
        next(items)


def test_empty_csv_is_a_format_error() -> None:
    with pytest.raises(FeedFormatError, match="no header row"):
        list(parse_csv("# only comments\n\n"))


# ---------------------------------------------------------------------------------------------
# detection and parse_feed


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("firehol_level1.netset", "plain"),
        ("spamhaus_drop.txt", "plain"),
        ("feodo_ipblocklist.csv", "csv"),
        ("threatfox_recent.csv", "csv"),
        ("urlhaus_recent.csv", "csv"),
        ("stix_bundle.json", "stix"),
        ("misp_event.json", "misp"),
        ("misp_feed/1b6d3a2f-4c5e-4d6f-9a7b-8c9d0e1f2a3b.json", "misp"),
    ],
)
def test_detect_format_of_real_layouts(name: str, fmt: str) -> None:
    assert detect_format((FEEDS / name).read_bytes()) == fmt


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"[2001:db8::1]:443\n[2001:db8::2]:443\n", "plain"),
        (b"192.0.2.1, 192.0.2.2\n", "plain"),  # commas but no header
        (json.dumps([{"Event": {"uuid": "x", "Attribute": []}}]).encode(), "misp"),
        (json.dumps({"Attribute": []}).encode(), "misp"),
        (json.dumps({"type": "indicator", "id": "indicator--1", "pattern": "x"}).encode(), "stix"),
        (json.dumps([{"type": "indicator", "id": "indicator--1"}]).encode(), "stix"),
        (b"# ip,port\n192.0.2.1,80\n", "csv"),
    ],
)
def test_detect_format_from_content(data: bytes, fmt: str) -> None:
    assert detect_format(data) == fmt


def test_detect_uses_csv_file_name_for_unknown_columns() -> None:
    data = b"addr,seen\n192.0.2.1,2024\n"
    assert detect_format(data) == "plain"
    assert detect_format(data, "export.CSV") == "csv"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"192.0.2.1\n\x00\x01", "feed is binary, not text (NUL byte at offset 10)"),
        (b"192.0.2.1\n\xff\xfe", "feed is not UTF-8 text: byte 0xff at offset 10 (invalid start byte)"),
        (b"\xef\xbb\xbfab\xc3", "feed is not UTF-8 text: byte 0xc3 at offset 5 (unexpected end of data)"),
        (b'{"hello": 1}', "feed is JSON but neither a STIX 2.1 bundle nor MISP events"),
        (b'{"type": "bundle", ', "feed looks like JSON but does not parse as JSON"),
    ],
)
def test_unreadable_feeds(data: bytes, message: str) -> None:
    with pytest.raises(FeedFormatError) as err:
        detect_format(data)
    assert str(err.value) == message
    with pytest.raises(FeedFormatError):
        parse_feed(data)


def test_parse_feed_strips_bom_and_dispatches() -> None:
    assert list(parse_feed(b"\xef\xbb\xbf192.0.2.1\r\n")) == [FeedEntry("line 1", "192.0.2.1")]
    assert list(parse_feed(b"\xef\xbb\xbfip\n192.0.2.1\n", "csv")) == [FeedEntry("line 2", "192.0.2.1")]
    stix = (FEEDS / "stix_bundle.json").read_bytes()
    assert [i.where for i in parse_feed(stix)][:1] == ["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]
    assert list(parse_feed(stix, "stix")) == list(parse_feed(stix))
    misp = (FEEDS / "misp_event.json").read_bytes()
    assert len(list(parse_feed(misp, "misp"))) == len(list(parse_feed(misp))) == 12
    # an explicit format wins over detection: this CSV read as plain is one value per line
    assert pairs(list(parse_feed(b"ip\n192.0.2.1\n", "plain"))) == [("line 1", "ip"), ("line 2", "192.0.2.1")]


def test_parse_feed_column_hint_and_errors() -> None:
    data = b"addr,seen\n192.0.2.1,2024\n"
    assert list(parse_feed(data, column="addr")) == [FeedEntry("line 2", "192.0.2.1")]
    with pytest.raises(FeedFormatError, match="only used with CSV feeds, this feed is plain"):
        parse_feed(b"192.0.2.1\n", "plain", column="ip")
    with pytest.raises(FeedFormatError) as err:
        parse_feed(b"192.0.2.1\n", "txt")
    assert str(err.value) == "unknown feed format 'txt'; formats: auto, plain, csv, stix, misp"
    assert FORMATS == ("auto", "plain", "csv", "stix", "misp")
