"""A results-sharing mapping set is refused at start with the file, the key and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.uplinks.results_sharing.mapping import DEFAULT_DIR, MappingError, load_mapping_set


def copy(tmp_path: Path) -> Path:
    folder = tmp_path / "mapping"
    shutil.copytree(DEFAULT_DIR, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")


def test_ours_is_complete():
    mapping = load_mapping_set(DEFAULT_DIR)
    assert mapping.endpoint_of("exam.index")[0] == "uploadExamIndex"
    assert mapping.platform.daily is not None and mapping.platform.keys is not None
    assert set(mapping.platform.queries) >= {"exams", "labs", "viewer_key"}


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        (
            "fields.toml",
            '{ target = "patientName", source = "patient.name" },',
            '{ target = "patName", source = "patient.name" },',
            "fields.toml: maps.\"exam.index\".patName: 'patName' is not a field of"
            " tables.uploadExamIndex",
        ),
        (
            "fields.toml",
            '[maps."exam.pdf"]',
            '[maps."exam.pdf_old"]',
            'fields.toml: maps."exam.pdf": missing (the uplink sends it)',
        ),
        (
            "fields.toml",
            '{ name = "examTime", type = "DT", required = true',
            '{ name = "examTime", type = "DTX", required = true',
            "fields.toml: tables.uploadExamIndex.fields[16].type: unknown type 'DTX'",
        ),
        (
            "platform.toml",
            "[endpoints.uploadExamIndex]",
            "[endpoints.uploadExamIndexV2]",
            "fields.toml: tables.uploadExamIndexV2: missing (platform.toml has it)",
        ),
        (
            "platform.toml",
            'body = "multipart"',
            'body = "xml"',
            "platform.toml: endpoints.uploadExamReportPdf.body: Input should be 'json' or"
            " 'multipart'",
        ),
        (
            "platform.toml",
            "[auth]",
            "[authorisation]",
            "platform.toml: authorisation: unknown key",
        ),
    ],
)
def test_a_broken_mapping_names_the_file_the_key_and_the_reason(tmp_path, file, old, new, says):
    folder = copy(tmp_path)
    edit(folder / file, old, new)
    with pytest.raises(MappingError) as raised:
        load_mapping_set(folder)
    assert str(raised.value).startswith(str(folder)), raised.value
    assert says in str(raised.value)
