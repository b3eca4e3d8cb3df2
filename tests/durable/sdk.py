"""The durable execution SDK as a function bundles it: its package files, for a zip.

Functions carry the SDK in their deployment package (as on Lambda, where a function
installs it with `pip install -t`); boto3, which it needs, is the runtime's.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import aws_durable_execution_sdk_python


@cache
def sdk_files() -> dict[str, bytes]:
    root = Path(aws_durable_execution_sdk_python.__file__).parent
    return {
        f"{root.name}/{path.relative_to(root)}": path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
