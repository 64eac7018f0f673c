"""Architecture: imports point one way (models -> judges -> scoring -> cache -> interfaces)."""

from __future__ import annotations

import ast
from pathlib import Path

import rubricgate

PACKAGE = Path(rubricgate.__file__).parent
LAYER = {"errors": 0, "http_pool": 0, "models": 0, "library": 1, "judges": 1, "scoring": 2, "authoring": 2, "cache": 3,
         "interfaces": 4, "integrations": 4}


def test_imports_point_left_only() -> None:
    offences = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0].removesuffix(".py")
        if layer not in LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rubricgate."):
                target = node.module.split(".")[1]
                if target in LAYER and LAYER[target] > LAYER[layer]:
                    offences.append(f"{path.relative_to(PACKAGE)} imports {node.module}")
    assert not offences


def test_public_api_is_sorted_and_complete() -> None:
    assert rubricgate.__all__ == sorted(rubricgate.__all__)
    for name in rubricgate.__all__:
        assert hasattr(rubricgate, name), name


def test_sdk_imports_stay_in_private_backend_modules() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "import litellm" in text or "from llama_cpp" in text:
            assert path.name in {"_litellm.py", "_llamacpp.py"}, path
