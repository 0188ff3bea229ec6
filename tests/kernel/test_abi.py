"""cffi's layout of every mroute struct equals the C compiler's with the real headers."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mfc_dbus.kernel.abi import ffi

KERNEL_STRUCTS = [
    "struct vifctl",
    "struct mfcctl",
    "struct sioc_sg_req",
    "struct sioc_vif_req",
    "struct igmpmsg",
    "struct mif6ctl",
    "struct mf6cctl",
    "struct sioc_sg_req6",
    "struct sioc_mif_req6",
    "struct mrt6msg",
    "struct if_set",
    "struct group_req",
    "struct group_source_req",
    "struct group_filter",
]


def _cffi_layout() -> list[tuple[str, str, int]]:
    rows = []
    for name in KERNEL_STRUCTS:
        rows.append((name, "sizeof", ffi.sizeof(name)))
        for field, _ in ffi.typeof(name).fields:
            rows.append((name, field, ffi.offsetof(name, field)))
    return rows


def _c_program(rows: list[tuple[str, str, int]]) -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/mroute.h>",
        "#include <linux/mroute6.h>",
        "int main(void) {",
    ]
    for struct, field, _ in rows:
        expr = f"sizeof({struct})" if field == "sizeof" else f"offsetof({struct}, {field})"
        lines.append(f'    printf("%s|%s|%zu\\n", "{struct}", "{field}", {expr});')
    lines += ["    return 0;", "}"]
    return "\n".join(lines)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc and linux-libc-dev")
def test_every_sizeof_and_offsetof_matches_the_kernel_headers(tmp_path):
    rows = _cffi_layout()
    source = tmp_path / "layout.c"
    binary = tmp_path / "layout"
    source.write_text(_c_program(rows))
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    from_c = {
        (struct, field): int(value)
        for struct, field, value in (line.split("|") for line in output.splitlines())
    }
    from_cffi = {(struct, field): value for struct, field, value in rows}
    assert len(from_cffi) > 50  # every struct and every field was compared
    assert from_cffi == from_c


def test_no_hand_written_padding_fields():
    for name in KERNEL_STRUCTS:
        for field, _ in ffi.typeof(name).fields:
            assert "pad" not in field or field == "im6_pad", f"{name}.{field}"
