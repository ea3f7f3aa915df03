"""Writing a kind imports only the authoring API: `longops.kinds` used to import every
built-in kind, and with them PyAV, NumPy and Pillow, into any module defining a kind."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("av", "numpy", "PIL", "pypdf", "docx")


def test_importing_the_authoring_api_imports_nothing_heavy() -> None:
    script = (
        "import sys\n"
        "from longops.kinds import Context, OperationFailed, kind\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == []


def test_the_builtin_kinds_are_a_separate_import() -> None:
    from longops.kinds.builtin import default_registry

    names = set(default_registry().names())
    assert {
        "longops.sleep",
        "generate_videos",
        "import_file",
        "upload_to_file_search_store",
    } <= names
