"""Validation of exported documents against the published schemas shipped in ``schemas/``.

Used by the tests and by integrators checking a document by hand; jsonschema, PyYAML and xmlschema are
imported only here, only when called.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
CAP_XSD = SCHEMA_DIR / "CAP-v1.2.xsd"
EIDO_COMPONENTS = SCHEMA_DIR / "eido-1.0-components.yaml"


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects are JSON Schema draft 4/7 with refs under components: rewrite the refs."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                out[key] = "#/definitions/" + value.rsplit("/", 1)[1]
            elif key == "properties" and isinstance(value, dict):
                # property names (even "$ref", "$id") are data here, not keywords
                out[key] = {name: _openapi_to_json_schema(sub) for name, sub in value.items()}
            else:
                out[key] = _openapi_to_json_schema(value)
        return out
    if isinstance(node, list):
        return [_openapi_to_json_schema(v) for v in node]
    return node


@lru_cache(maxsize=1)
def eido_json_schema() -> dict[str, Any]:
    import yaml

    spec = yaml.safe_load(EIDO_COMPONENTS.read_text(encoding="utf-8"))
    definitions = copy.deepcopy(spec["components"]["schemas"])
    # Upstream typo: minItems "1," (a string) in AgentType.agentRoleRegistryText.
    agent_props = definitions["AgentType"]["allOf"][1]["properties"]
    if agent_props["agentRoleRegistryText"].get("minItems") == "1,":
        agent_props["agentRoleRegistryText"]["minItems"] = 1
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$ref": "#/definitions/EmergencyIncidentDataObjectType",
        "definitions": _openapi_to_json_schema(definitions),
    }


def eido_errors(document: dict[str, Any]) -> list[str]:
    """Every schema violation of an EIDO document, as "path: message" lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(
        eido_json_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@lru_cache(maxsize=1)
def _cap_schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema(str(CAP_XSD))


def cap_errors(document: bytes) -> list[str]:
    """Every CAP 1.2 schema violation of an XML document (empty when valid)."""
    return [str(error.reason or error) for error in _cap_schema().iter_errors(document.decode("utf-8"))]
