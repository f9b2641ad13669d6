"""MISP events and MISP feed directories: the network attributes flagged for detection (to_ids).

MISP marks with ``to_ids`` which attributes are meant for blocking and detection; the others are
context (a victim's address, a sandbox's resolver) that must never become a block, so they are
skipped with that reason. Attributes inside objects count like top-level ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controller.intel.entries import TLP_LEVELS, FeedEntry, FeedFormatError, FeedItem, Skipped, load_json

# type -> which parts of a "a|b" value are the indicator ("addr|port" keeps the address).
NETWORK_TYPES: dict[str, tuple[str, ...]] = {
    "ip-dst": ("address",),
    "ip-src": ("address",),
    "ip-dst|port": ("address", "port"),
    "ip-src|port": ("address", "port"),
    "domain": ("domain",),
    "hostname": ("domain",),
    "domain|ip": ("domain", "address"),
    "hostname|port": ("domain", "port"),
    "url": ("url",),
}


def _flag(value: Any) -> bool:
    """MISP writes booleans as true/false, 1/0 or "1"/"0" depending on version and export."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return value is True or (isinstance(value, int) and value == 1)


def _tags(holder: dict[str, Any]) -> list[str]:
    """Tag names of an event or attribute: ``Tag: [{"name": ...}]`` or ``EventTag: [{"Tag": {...}}]``."""
    names: list[str] = []
    for key in ("Tag", "EventTag", "AttributeTag"):
        entries = holder.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            tag = entry.get("Tag", entry) if isinstance(entry, dict) else None
            if isinstance(tag, dict) and isinstance(tag.get("name"), str):
                names.append(tag["name"])
    return names


def tlp_from_tags(names: list[str]) -> str | None:
    """The most restrictive ``tlp:`` tag (``tlp:white`` is TLP 1.0 for clear), or None."""
    found = []
    for name in names:
        level = name.strip().lower()
        if level.startswith("tlp:"):
            level = level[4:]
            level = "clear" if level == "white" else level
            if level in TLP_LEVELS:
                found.append(level)
    return max(found, key=TLP_LEVELS.index) if found else None


def _events(data: str | bytes | dict[str, Any] | list[Any]) -> list[Any]:
    data = load_json(data, "MISP")
    if isinstance(data, dict) and isinstance(data.get("response"), list):
        data = data["response"]  # a restSearch answer
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise FeedFormatError(f"MISP feed must be an event or a list of events, got JSON {type(data).__name__}")


def _unwrap(item: Any, label: str) -> dict[str, Any]:
    event = item.get("Event", item) if isinstance(item, dict) else None
    if not isinstance(event, dict) or not any(k in event for k in ("Attribute", "Object", "uuid", "info")):
        raise FeedFormatError(f"{label} is not a MISP event (no Event, Attribute, Object or uuid)")
    return event


def parse_misp(data: str | bytes | dict[str, Any] | list[Any]) -> Iterator[FeedItem]:
    """Feed items of a MISP event (``{"Event": {...}}`` or bare) or a list of events.

    ``where`` is ``event <uuid> attribute <uuid>``; without uuids, positions stand in
    (``event #0``, ``attribute #3``, ``object #1 attribute #0``).
    """
    for index, item in enumerate(_events(data)):
        yield from _event_items(_unwrap(item, f"MISP event #{index}"), f"#{index}")


def _event_items(event: dict[str, Any], fallback: str, outer_tlp: str | None = None) -> Iterator[FeedItem]:
    event_id = event.get("uuid") if isinstance(event.get("uuid"), str) else fallback
    event_tlp = tlp_from_tags(_tags(event)) or outer_tlp
    attributes = event.get("Attribute", [])
    if isinstance(attributes, list):
        for index, attribute in enumerate(attributes):
            yield from _attribute_items(attribute, f"event {event_id}", f"attribute #{index}", event_tlp)
    objects = event.get("Object", [])
    if not isinstance(objects, list):
        return
    for obj_index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("Attribute", []), list):
            yield Skipped(f"event {event_id} object #{obj_index}", "object is not a MISP object", False)
            continue
        if _flag(obj.get("deleted")):
            continue
        obj_id = obj.get("uuid") if isinstance(obj.get("uuid"), str) else f"#{obj_index}"
        for index, attribute in enumerate(obj.get("Attribute", [])):
            yield from _attribute_items(
                attribute, f"event {event_id}", f"object {obj_id} attribute #{index}", event_tlp
            )


def _attribute_items(
    attribute: Any, event_where: str, fallback: str, event_tlp: str | None
) -> Iterator[FeedItem]:
    if not isinstance(attribute, dict):
        yield Skipped(f"{event_where} {fallback}", "attribute is not a JSON object", unsupported=False)
        return
    attr_id = attribute.get("uuid")
    where = f"{event_where} attribute {attr_id}" if isinstance(attr_id, str) else f"{event_where} {fallback}"
    if _flag(attribute.get("deleted")):
        return
    kind = attribute.get("type")
    parts = NETWORK_TYPES.get(kind) if isinstance(kind, str) else None
    if parts is None:
        yield Skipped(where, f"type {str(kind)[:40]!r} is not a network indicator", unsupported=True)
        return
    if not _flag(attribute.get("to_ids")):
        yield Skipped(where, "to_ids is false", unsupported=True)
        return
    value = attribute.get("value")
    if not isinstance(value, str) or not value.strip():
        yield Skipped(where, f"{kind} attribute has no value", unsupported=False)
        return
    pieces = [value.strip()] if len(parts) == 1 else [p.strip() for p in value.rsplit("|", 1)]
    if len(pieces) != len(parts) or not all(pieces):
        yield Skipped(where, f"{kind} value {value[:80]!r} is not {'|'.join(parts)}", unsupported=False)
        return
    tlp = tlp_from_tags(_tags(attribute)) or event_tlp
    for part, piece in zip(parts, pieces, strict=True):
        if part != "port":
            yield FeedEntry(where, piece, is_url=part == "url", tlp=tlp)


def misp_feed_events(path: Path) -> list[dict[str, Any]]:
    """The events of a MISP feed directory: ``manifest.json`` (event uuid -> metadata) and ``<uuid>.json``.

    Events come in manifest order, each as ``{"Event": {...}}``. An event listed but missing, or a
    manifest key that is not a UUID (it names a file, so it must not be a path), is a
    FeedFormatError. A ``tlp:`` tag in the manifest is added to an event whose file carries none,
    so the list reads as the directory does (the CLI and path feeds send it as one JSON list).
    """
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except FileNotFoundError as exc:
        raise FeedFormatError(f"{path} is not a MISP feed: no manifest.json") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise FeedFormatError(f"{manifest_path} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise FeedFormatError(f"{manifest_path} must map event uuids to metadata")
    events = []
    for key, meta in manifest.items():
        if not _is_uuid(key):
            raise FeedFormatError(f"{manifest_path}: {key[:60]!r} is not an event uuid")
        event_path = path / f"{key}.json"
        try:
            data = json.loads(event_path.read_bytes())
        except FileNotFoundError as exc:
            missing = f"event {key} is in manifest.json but {event_path.name} is missing"
            raise FeedFormatError(missing) from exc
        except (OSError, ValueError, RecursionError) as exc:
            raise FeedFormatError(f"{event_path.name} cannot be read: {exc}") from exc
        event = _unwrap(data, event_path.name)
        outer_tlp = tlp_from_tags(_tags(meta)) if isinstance(meta, dict) else None
        if outer_tlp and not tlp_from_tags(_tags(event)):
            tags = event.get("Tag") if isinstance(event.get("Tag"), list) else []
            event = {**event, "uuid": event.get("uuid", key), "Tag": [*tags, {"name": f"tlp:{outer_tlp}"}]}
        events.append({"Event": {"uuid": key, **event}})
    return events


def parse_misp_dir(path: Path) -> Iterator[FeedItem]:
    """Feed items of a MISP feed directory (see misp_feed_events)."""
    yield from parse_misp(misp_feed_events(path))


def _is_uuid(text: str) -> bool:
    """Only the canonical 8-4-4-4-12 form: the key becomes a file name, so no other spelling passes."""
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
