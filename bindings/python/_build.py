"""A minimal PEP 517 build backend (standard library only) for the pure-Python
vmenc package: wheels and sdists without setuptools, so installs need no
package index. The package is pure Python (ctypes); nothing is compiled."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME, VERSION = "vmenc", "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
DIST = f"{NAME}-{VERSION}"
TAG = "py3-none-any"

METADATA = f"""Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Python binding of the vmenc VM-encryption library (ctypes over libvmenc.so.0)
License: Apache-2.0
Requires-Python: >=3.9
"""


def _files():
    pkg = os.path.join(HERE, NAME)
    for root, dirs, files in os.walk(pkg):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in sorted(files):
            if f.endswith((".py", ".typed")):
                full = os.path.join(root, f)
                yield full, os.path.relpath(full, HERE).replace(os.sep, "/")


def _record_line(arc, data):
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arc},sha256={h},{len(data)}"


def _write_wheel(wheel_directory, entries):
    fname = f"{DIST}-{TAG}.whl"
    di = f"{DIST}.dist-info"
    entries = list(entries) + [
        (f"{di}/METADATA", METADATA.encode()),
        (f"{di}/WHEEL", f"Wheel-Version: 1.0\nGenerator: vmenc-_build\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode()),
        (f"{di}/top_level.txt", f"{NAME}\n".encode()),
    ]
    record = [_record_line(a, d) for a, d in entries] + [f"{di}/RECORD,,"]
    with zipfile.ZipFile(os.path.join(wheel_directory, fname), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries:
            z.writestr(arc, data)
        z.writestr(f"{di}/RECORD", "\n".join(record) + "\n")
    return fname


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    entries = []
    for full, arc in _files():
        with open(full, "rb") as f:
            entries.append((arc, f.read()))
    return _write_wheel(wheel_directory, entries)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(f"__editable__.{NAME}.pth", (HERE + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    fname = f"{DIST}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, fname), "w:gz") as t:
        for rel in ["pyproject.toml", "_build.py", "README.md"]:
            p = os.path.join(HERE, rel)
            if os.path.exists(p):
                t.add(p, f"{DIST}/{rel}")
        for full, arc in _files():
            t.add(full, f"{DIST}/{arc}")
        info = tarfile.TarInfo(f"{DIST}/PKG-INFO")
        data = METADATA.encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return fname
